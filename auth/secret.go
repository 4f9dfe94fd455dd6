package auth

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Errors of CleanSecret.
var (
	ErrEmptySecret     = errors.New("auth token is empty")
	ErrSecretLineBreak = errors.New("auth token must not contain CR or LF")
)

// CleanSecret trims the surrounding whitespace of a shared secret as given
// on a command line, in a variable or in a file, and rejects an empty one
// (ErrEmptySecret) or one spanning lines (ErrSecretLineBreak): the secret
// travels as one protocol line.
func CleanSecret(raw string) (string, error) {
	tok := strings.TrimSpace(raw)
	if tok == "" {
		return "", ErrEmptySecret
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", ErrSecretLineBreak
	}
	return tok, nil
}

// ReadSecretFile reads a shared secret from a file and cleans it with
// CleanSecret.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok, err := CleanSecret(string(b))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	return tok, nil
}
