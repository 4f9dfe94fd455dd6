package bench

import "syscall"

// procAttr makes a node die with the bench (a bench killed with SIGKILL
// cannot stop its nodes itself).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
