package main

import (
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
)

// envResolver is a kong.Resolver that reads each flag's environment
// variable (the envvar tag, then the deprecated envalias tag) through an
// injectable lookupEnv (os.LookupEnv in main). A variable is read only for
// a flag that is absent from the command line (kong consults resolvers for
// those alone), so an explicit flag always wins. Rules:
//
//   - a variable that is set but empty, or only whitespace, is a
//     configuration error ("DFLOCKD_X is set but empty"), whatever the
//     setting: a deployment template with a missing value
//     (DFLOCKD_AUTH_TOKEN=${SECRET}) must fail loudly, never run with a
//     protection switched off or a default quietly chosen;
//   - a value that does not parse as the setting's type (integer, boolean,
//     list element) is a configuration error naming the variable and the
//     value; booleans accept 1/yes/true and 0/no/false, case-insensitively;
//     values are taken as written (" 7000" is not an integer);
//   - a deprecated alias is honoured with a warning, unless the canonical
//     variable is set too (then it is ignored, with a warning); either one,
//     when set, must be valid.
//
// These replace the 1.x rules of PROTOCOL.md §8 (an empty variable counted
// as unset; an unparsable number fell back to the default). The first
// error is kept and reported by parse as it is, so the message names the
// variable rather than kong's flag summary. Warnings are collected, not
// logged, because the logger depends on --debug, which is itself being
// resolved.
type envResolver struct {
	lookupEnv func(string) (string, bool)
	sources   map[string]string // flag name → variable that supplied its value
	asked     map[string]bool   // flags kong consulted us on: absent from the command line
	warnings  []envWarning
	err       error // the first bad variable
}

// envWarning is a warning about the environment, logged once at startup.
type envWarning struct {
	msg  string
	args []any
}

var _ kong.Resolver = (*envResolver)(nil)

func newEnvResolver(lookupEnv func(string) (string, bool)) *envResolver {
	return &envResolver{lookupEnv: lookupEnv, sources: map[string]string{}, asked: map[string]bool{}}
}

// Validate implements kong.Resolver.
func (r *envResolver) Validate(*kong.Application) error { return nil }

// Resolve implements kong.Resolver. It returns nil (no value) when the
// variable is unset, leaving the flag at its default, and also when it is
// unusable, recording the error for parse to report.
func (r *envResolver) Resolve(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	r.asked[f.Name] = true
	primary, alias := f.Tag.Get("envvar"), f.Tag.Get("envalias")
	if primary == "" {
		return nil, nil
	}
	pv, pset := r.lookupEnv(primary)
	av, aset := "", false
	if alias != "" {
		av, aset = r.lookupEnv(alias)
	}
	var value any
	if pset {
		v, err := envValue(primary, pv, f.Target.Type())
		if err != nil {
			r.fail(err)
			return nil, nil
		}
		value = v
		r.sources[f.Name] = primary
	}
	if aset {
		v, err := envValue(alias, av, f.Target.Type())
		if err != nil {
			r.fail(err)
			return nil, nil
		}
		if pset {
			r.warn("ignoring deprecated environment variable: canonical one is set", "var", alias, "use", primary)
		} else {
			r.warn("deprecated environment variable", "var", alias, "use", primary)
			value = v
			r.sources[f.Name] = alias
		}
	}
	return value, nil
}

// fail records err unless an earlier variable already failed.
func (r *envResolver) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// envValue checks the raw value of the variable name for a flag of type
// typ and returns what to hand kong: a bool or int64 for those kinds, else
// raw for kong to parse (after checking here that it will parse, so the
// error names the variable).
func envValue(name, raw string, typ reflect.Type) (any, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%s is set but empty", name)
	}
	if reflect.PointerTo(typ).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		// A type with its own syntax (cliflag.Seconds): check it here so
		// the error names the variable, and hand kong the text.
		if err := reflect.New(typ).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(raw)); err != nil {
			return nil, fmt.Errorf("%s=%q: %w", name, raw, err)
		}
		return raw, nil
	}
	switch typ.Kind() {
	case reflect.Bool:
		b, ok := parseEnvBool(raw)
		if !ok {
			return nil, fmt.Errorf("%s=%q is not a boolean (want 1/yes/true or 0/no/false)", name, raw)
		}
		return b, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, typ.Bits())
		if err != nil {
			return nil, fmt.Errorf("%s=%q is not an integer%s", name, raw, rangeNote(err, typ))
		}
		return n, nil
	case reflect.Slice:
		for _, v := range strings.Split(raw, ",") {
			if err := checkElem(v, typ.Elem()); err != nil {
				return nil, fmt.Errorf("%s=%q: %w", name, raw, err)
			}
		}
	}
	return raw, nil
}

// rangeNote explains a strconv range error for an integer of type typ.
func rangeNote(err error, typ reflect.Type) string {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Sprintf(" that fits in %d bits", typ.Bits())
	}
	return ""
}

// checkElem checks that one element of a comma-separated list parses as
// elem: an integer of that size, or a value its UnmarshalText accepts
// (a --listen URL). Other element types pass.
func checkElem(v string, elem reflect.Type) error {
	if reflect.PointerTo(elem).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return reflect.New(elem).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(v))
	}
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
	return nil
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
