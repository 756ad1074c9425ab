package pyro

import "github.com/pyro-sandbox/pyro/internal/errs"

// Error is the error type of the SDK: what failed and why (Msg), what to do
// next (Hint) and a Kind.
type Error = errs.Error

// ErrorKind classifies an Error; its string is the JSON and MCP error code.
type ErrorKind = errs.Kind

// Error kinds.
const (
	ErrInternal    = errs.Internal
	ErrInvalid     = errs.Invalid
	ErrNotFound    = errs.NotFound
	ErrConflict    = errs.Conflict
	ErrUnavailable = errs.Unavailable
	ErrTimeout     = errs.Timeout
	ErrCancelled   = errs.Cancelled
)

// KindOf returns the kind of err.
func KindOf(err error) ErrorKind { return errs.KindOf(err) }

// HintOf returns what to do about err, if pyro knows.
func HintOf(err error) string { return errs.HintOf(err) }
