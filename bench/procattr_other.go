//go:build !linux

package bench

import "syscall"

// procAttr: elsewhere the bench stops its nodes only when it exits normally.
func procAttr() *syscall.SysProcAttr { return nil }
