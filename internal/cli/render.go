package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

// writeJSON prints v as one JSON object: indent 2, keys sorted at every
// level (the contract's form), so output is stable for scripts and diffs.
func writeJSON(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil { // maps encode with sorted keys
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// ErrorPayload is the JSON form of an error.
type ErrorPayload struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is what failed, its code and what to do next.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func errorBody(err error) ErrorBody {
	return ErrorBody{Code: string(errs.KindOf(err)), Message: err.Error(), Hint: errs.HintOf(err)}
}

// printError renders err for people: one line of what failed, then the
// hint.
func printError(w io.Writer, err error) {
	msg := err.Error()
	fmt.Fprintf(w, "pyro: %s\n", strings.TrimSpace(msg))
	if hint := errs.HintOf(err); hint != "" {
		fmt.Fprintf(w, "hint: %s\n", hint)
	}
}
