// Package version tells which build of dflockd is running. Every binary
// (dflockd, dflockctl, bench) prints it the same way for --version:
//
//	dflockctl v1.2.3 (go1.26.8)
//	dflockctl (devel) (go1.26.8)
//
// The version is the main module's version from the Go build information
// (set by `go install module@version`), unless a release build overrides it
// with -ldflags "-X github.com/dflockd/dflockd/internal/version.version=v1.2.3".
// A binary built from a work tree has no module version and reports "(devel)".
package version

import (
	"runtime"
	"runtime/debug"
)

// version overrides the module version when set at link time.
var version = ""

// Devel is the version of a binary built from a work tree.
const Devel = "(devel)"

// readBuildInfo is debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

// Version returns the version of this build: the link-time override, else
// the main module's version, else Devel.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := readBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return Devel
}

// String returns the line --version prints for the program name:
// "name VERSION (GOVERSION)".
func String(name string) string {
	return name + " " + Version() + " (" + runtime.Version() + ")"
}
