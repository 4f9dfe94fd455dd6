package main

import (
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
)

// envResolver is a kong.Resolver that reads each flag's environment
// variable (the envvar tag, then the deprecated envalias tag) through an
// injectable getenv, with the 1.x rules of PROTOCOL.md §8:
//
//   - an empty variable counts as unset;
//   - an unparsable integer or boolean falls back to the flag default, with
//     a warning (the reference server was silent; we are not);
//   - booleans accept 1/yes/true and 0/no/false, case-insensitively;
//   - a deprecated alias is honoured with a warning, unless the canonical
//     variable is set too.
//
// kong consults resolvers only for flags absent from the command line, so
// an explicit flag always wins. Warnings are collected, not logged, because
// the logger depends on --debug, which is itself being resolved.
type envResolver struct {
	getenv   func(string) string
	sources  map[string]string // flag name → variable that supplied its value
	asked    map[string]bool   // flags kong consulted us on: absent from the command line
	warnings []envWarning
}

// envWarning is a warning about the environment, logged once at startup.
type envWarning struct {
	msg  string
	args []any
}

var _ kong.Resolver = (*envResolver)(nil)

func newEnvResolver(getenv func(string) string) *envResolver {
	return &envResolver{getenv: getenv, sources: map[string]string{}, asked: map[string]bool{}}
}

// Validate implements kong.Resolver.
func (r *envResolver) Validate(*kong.Application) error { return nil }

// Resolve implements kong.Resolver. It returns nil (no value) when the
// variable is unset or unusable, leaving the flag at its default.
func (r *envResolver) Resolve(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	r.asked[f.Name] = true
	name, raw := r.lookup(f)
	if name == "" {
		return nil, nil
	}
	var value any = raw
	switch kind := f.Target.Kind(); kind {
	case reflect.Bool:
		b, ok := parseEnvBool(raw)
		if !ok {
			r.warn("ignoring environment variable: not a boolean (want 1/yes/true or 0/no/false)",
				"var", name, "value", raw, "default", f.Default)
			return nil, nil
		}
		value = b
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, f.Target.Type().Bits())
		if err != nil {
			r.warn("ignoring environment variable: not an integer",
				"var", name, "value", raw, "default", f.Default)
			return nil, nil
		}
		value = n
	case reflect.Slice:
		// Lists (--listen, the Unix allow lists) never fall back to the
		// default: a typo in an allow list must not admit everybody.
		// Integer elements are checked here so the error names the
		// variable; kong parses the list itself.
		if err := checkIntList(raw, f.Target.Type().Elem()); err != nil {
			return nil, fmt.Errorf("$%s: %w", name, err)
		}
	}
	r.sources[f.Name] = name
	return value, nil
}

// lookup returns the variable that sets f and its raw value, or "" if none
// is set. It records deprecation warnings.
func (r *envResolver) lookup(f *kong.Flag) (name, raw string) {
	primary := f.Tag.Get("envvar")
	if primary == "" {
		return "", ""
	}
	alias := f.Tag.Get("envalias")
	aliasValue := ""
	if alias != "" {
		aliasValue = r.getenv(alias)
	}
	if v := r.getenv(primary); v != "" {
		if aliasValue != "" {
			r.warn("ignoring deprecated environment variable: canonical one is set", "var", alias, "use", primary)
		}
		return primary, v
	}
	if aliasValue != "" {
		r.warn("deprecated environment variable", "var", alias, "use", primary)
		return alias, aliasValue
	}
	return "", ""
}

// warn records a warning once.
func (r *envResolver) warn(msg string, args ...any) {
	r.warnings = append(r.warnings, envWarning{msg: msg, args: args})
}

// source returns the variable that supplied flag's value, or "".
func (r *envResolver) source(flag string) string { return r.sources[flag] }

// explicit reports whether flag was given on the command line. kong
// consults resolvers exactly for the flags that were not, so this holds
// once parsing is done.
func (r *envResolver) explicit(flag string) bool { return !r.asked[flag] }

// logWarnings logs the collected warnings.
func (r *envResolver) logWarnings(log *slog.Logger) {
	for _, w := range r.warnings {
		log.Warn(w.msg, w.args...)
	}
}

// checkIntList checks that every comma-separated element of raw parses as
// an integer of type elem; other element types pass.
func checkIntList(raw string, elem reflect.Type) error {
	for _, v := range strings.Split(raw, ",") {
		var err error
		switch elem.Kind() {
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			_, err = strconv.ParseUint(v, 10, elem.Bits())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			_, err = strconv.ParseInt(v, 10, elem.Bits())
		default:
			return nil
		}
		if err != nil {
			return fmt.Errorf("%q is not a valid %s", v, elem)
		}
	}
	return nil
}

// parseEnvBool parses 1/yes/true and 0/no/false, case-insensitively.
func parseEnvBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "true":
		return true, true
	case "0", "no", "false":
		return false, true
	}
	return false, false
}
