//go:build !unix

package main

import "os"

// resizeSignals is empty where there is no SIGWINCH: top's screen takes
// the new size at its next update.
var resizeSignals []os.Signal
