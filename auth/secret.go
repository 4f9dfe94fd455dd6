package auth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dflockd/dflockd/protocol"
)

// Errors of CleanSecret.
var (
	ErrEmptySecret     = errors.New("auth token is empty")
	ErrSecretLineBreak = errors.New("auth token must not contain CR or LF")
	ErrSecretTooLong   = fmt.Errorf("auth token is longer than the %d bytes an auth request line can carry", protocol.MaxLongLine)
)

// maxSecretFile is the size beyond which ReadSecretFile refuses a file
// without reading it all: the longest token plus as much again of
// surrounding whitespace, which CleanSecret trims.
const maxSecretFile = 2 * protocol.MaxLongLine

// CleanSecret trims the surrounding whitespace of a shared secret as given
// on a command line, in a variable or in a file, and rejects an empty one
// (ErrEmptySecret), one spanning lines (ErrSecretLineBreak) or one longer
// than the arg line of an auth request may be (ErrSecretTooLong,
// protocol.MaxLongLine): the secret travels as one protocol line, and a
// server configured with a longer one could never be authenticated to.
func CleanSecret(raw string) (string, error) {
	tok := strings.TrimSpace(raw)
	if tok == "" {
		return "", ErrEmptySecret
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", ErrSecretLineBreak
	}
	if len(tok) > protocol.MaxLongLine {
		return "", ErrSecretTooLong
	}
	return tok, nil
}

// ReadSecretFile reads a shared secret from a file and cleans it with
// CleanSecret. A file larger than twice protocol.MaxLongLine is refused
// (ErrSecretTooLong) after reading only that much of it, so a wrong path
// (a log, a device) fails at once.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("token file %s is larger than %d bytes: %w", path, maxSecretFile, ErrSecretTooLong)
	}
	tok, err := CleanSecret(string(b))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	return tok, nil
}
