package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/protocol"
)

func TestCleanSecret(t *testing.T) {
	longest := strings.Repeat("t", protocol.MaxLongLine)
	tests := []struct {
		raw     string
		want    string
		wantErr error
	}{
		{" s3cret\n", "s3cret", nil},
		{"", "", ErrEmptySecret},
		{" \t\n", "", ErrEmptySecret},
		{"a\nb", "", ErrSecretLineBreak},
		{"a\rb", "", ErrSecretLineBreak},
		{longest, longest, nil},
		{"\n" + longest + "\n", longest, nil},
		{longest + "t", "", ErrSecretTooLong},
	}
	for _, tt := range tests {
		got, err := CleanSecret(tt.raw)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("CleanSecret(%.20q…) = %.20q…, %v; want %.20q…, %v", tt.raw, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	longest := strings.Repeat("t", protocol.MaxLongLine)
	tests := []struct {
		name    string
		content string
		want    string
		wantErr error
	}{
		{"plain", "s3cret\n", "s3cret", nil},
		{"empty", "", "", ErrEmptySecret},
		{"two lines", "a\nb\n", "", ErrSecretLineBreak},
		{"longest", longest + "\n", longest, nil},
		{"longest, padded", strings.Repeat(" ", protocol.MaxLongLine) + longest, longest, nil},
		{"one byte too long", longest + "t\n", "", ErrSecretTooLong},
		{"far too long", strings.Repeat("t", 3*protocol.MaxLongLine), "", ErrSecretTooLong},
		{"too much padding", strings.Repeat("\n", protocol.MaxLongLine+1) + longest, "", ErrSecretTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSecretFile(p)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadSecretFile = %.20q…, %v; want %.20q…, %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
