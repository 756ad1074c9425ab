// Package errs classifies pyro's errors into a few kinds that map to exit
// codes, JSON error codes and MCP tool errors, and carries the hint that
// tells a user (or a model) what to do next.
package errs

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies an error.
type Kind string

// Kinds of errors. The strings are the "code" of JSON and MCP errors.
const (
	Internal    Kind = "internal"         // a bug, or a failure pyro cannot explain
	Invalid     Kind = "invalid_argument" // the request is wrong
	NotFound    Kind = "not_found"        // something named does not exist
	Conflict    Kind = "conflict"         // the state does not allow it (already exists, busy)
	Unavailable Kind = "unavailable"      // the host lacks something (QEMU, KVM, a kernel, space)
	Timeout     Kind = "timeout"          // it took too long
	Cancelled   Kind = "cancelled"        // the caller gave up
)

// Error is an error with a kind and a hint.
type Error struct {
	Kind Kind
	// Msg says what failed and why, in one line.
	Msg string
	// Hint says what to do next; may be empty.
	Hint string
	// Err is the underlying cause, if any; its text is part of Error().
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Msg != "" {
		return e.Msg + ": " + e.Err.Error()
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind with message msg and a hint.
func New(kind Kind, hint, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// Wrap classifies err, keeping it as the cause.
func Wrap(kind Kind, err error, hint, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Hint: hint, Err: err}
}

// KindOf returns the kind of the outermost classified error in err's chain,
// Cancelled or Timeout for context errors, and Internal otherwise.
func KindOf(err error) Kind {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, context.Canceled):
		return Cancelled
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout
	}
	return Internal
}

// HintOf returns the first hint in err's chain.
func HintOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
	return ""
}
