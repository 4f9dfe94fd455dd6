//go:build unix

package main

import (
	"os"
	"syscall"
)

// resizeSignals tell top's screen that the terminal changed size.
var resizeSignals = []os.Signal{syscall.SIGWINCH}
