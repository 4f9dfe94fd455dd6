package cliflag

import (
	"strings"
	"testing"
)

func TestSeconds(t *testing.T) {
	for in, want := range map[string]Seconds{
		"0": 0, "30": 30, " 30s ": 30, "5m": 300, "1h30m": 5400, "2000ms": 2, "9223372036": 9223372036,
	} {
		var s Seconds
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: %d, %v; want %d", in, s, err, want)
		}
	}
	for in, msg := range map[string]string{
		"500ms":      "must be whole seconds",
		"1.5s":       "must be whole seconds",
		"1.5":        "must be whole seconds",
		"1s500ms":    "must be whole seconds",
		"-1s":        "negative duration",
		"-3":         "negative duration",
		"soon":       "whole seconds such as",
		"9223372037": "more than",
	} {
		var s Seconds
		if err := s.UnmarshalText([]byte(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v; want an error containing %q", in, err, msg)
		}
	}
}
