package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	defer func(v string, f func() (*debug.BuildInfo, bool)) { version, readBuildInfo = v, f }(version, readBuildInfo)
	for _, tc := range []struct {
		override string
		info     *debug.BuildInfo
		want     string
	}{
		{"", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Devel},
		{"", &debug.BuildInfo{}, Devel},
		{"", nil, Devel},
		{"v9.9.9", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v9.9.9"},
	} {
		version = tc.override
		readBuildInfo = func() (*debug.BuildInfo, bool) { return tc.info, tc.info != nil }
		if got := Version(); got != tc.want {
			t.Errorf("override %q, build info %+v: Version() = %q, want %q", tc.override, tc.info, got, tc.want)
		}
	}
	version = "v1.2.3"
	if got, want := String("dflockctl"), "dflockctl v1.2.3 ("+runtime.Version()+")"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
