package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

type inner struct {
	Zeta  string            `json:"zeta"`
	Alpha int64             `json:"alpha"`
	Tags  map[string]string `json:"tags"`
}

type outer struct {
	Name   string         `json:"name"`
	Inner  inner          `json:"inner"`
	List   []inner        `json:"list"`
	Extra  map[string]any `json:"extra"`
	Beta   bool           `json:"beta"`
	Empty  []string       `json:"empty"`
	Absent *inner         `json:"absent,omitempty"`
}

func TestWriteJSONSortsAndIndents(t *testing.T) {
	v := outer{
		Name:  "x<y>&z",
		Inner: inner{Zeta: "z", Alpha: 1 << 62, Tags: map[string]string{"b": "2", "a": "1"}},
		List:  []inner{{Zeta: "first", Alpha: -1}, {Zeta: "second", Tags: map[string]string{"y": "", "x": "é"}}},
		Extra: map[string]any{"m": map[string]int{"z": 1, "a": 2}, "c": []any{3.5, nil}},
		Empty: []string{},
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, v); err != nil {
		t.Fatal(err)
	}
	want := `{
  "beta": false,
  "empty": [],
  "extra": {
    "c": [
      3.5,
      null
    ],
    "m": {
      "a": 2,
      "z": 1
    }
  },
  "inner": {
    "alpha": 4611686018427387904,
    "tags": {
      "a": "1",
      "b": "2"
    },
    "zeta": "z"
  },
  "list": [
    {
      "alpha": -1,
      "tags": null,
      "zeta": "first"
    },
    {
      "alpha": 0,
      "tags": {
        "x": "é",
        "y": ""
      },
      "zeta": "second"
    }
  ],
  "name": "x<y>&z"
}
`
	if got := buf.String(); got != want {
		t.Errorf("writeJSON wrote\n%s\nwant\n%s", got, want)
	}
}

func TestWriteJSONScalarsAndErrors(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, "null\n"},
		{42, "42\n"},
		{"s", "\"s\"\n"},
		{[]int{}, "[]\n"},
		{map[string]int{}, "{}\n"},
		{json.RawMessage(`{"b":1,"a":{"d":1,"c":2}}`), "{\n  \"a\": {\n    \"c\": 2,\n    \"d\": 1\n  },\n  \"b\": 1\n}\n"},
	} {
		var buf bytes.Buffer
		if err := writeJSON(&buf, tc.v); err != nil {
			t.Errorf("writeJSON(%v): %v", tc.v, err)
			continue
		}
		if buf.String() != tc.want {
			t.Errorf("writeJSON(%v) = %q, want %q", tc.v, buf.String(), tc.want)
		}
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, map[string]any{"f": func() {}}); err == nil {
		t.Error("writeJSON of a func succeeded")
	}
	if buf.Len() != 0 {
		t.Errorf("a failed writeJSON wrote %q", buf.String())
	}
}

func TestErrorPayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{
			"classified with a hint",
			errs.New(errs.NotFound, "run 'pyro env pull debian:12'", "environment %s is not installed", "debian:12"),
			`{
  "error": {
    "code": "not_found",
    "hint": "run 'pyro env pull debian:12'",
    "message": "environment debian:12 is not installed"
  }
}
`,
		},
		{
			"wrapped, hint from the inner error",
			fmt.Errorf("pulling: %w", errs.Wrap(errs.Unavailable, errors.New("no space"), "free some disk", "writing the blob")),
			`{
  "error": {
    "code": "unavailable",
    "hint": "free some disk",
    "message": "pulling: writing the blob: no space"
  }
}
`,
		},
		{
			"plain error",
			errors.New("boom"),
			`{
  "error": {
    "code": "internal",
    "message": "boom"
  }
}
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeJSON(&buf, ErrorPayload{Error: errorBody(tc.err)}); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", buf.String(), tc.want)
			}
		})
	}
}

func TestPrintError(t *testing.T) {
	var buf bytes.Buffer
	printError(&buf, errs.New(errs.Invalid, "use --mem-mib between 128 and 262144", "invalid memory size %d MiB", 0))
	want := "pyro: invalid memory size 0 MiB\nhint: use --mem-mib between 128 and 262144\n"
	if buf.String() != want {
		t.Errorf("printError wrote %q, want %q", buf.String(), want)
	}
	buf.Reset()
	printError(&buf, errors.New("boom\n"))
	if buf.String() != "pyro: boom\n" {
		t.Errorf("printError wrote %q", buf.String())
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{10 * 1024, "10.0 KiB"},
		{1 << 20, "1.0 MiB"},
		{5*(1<<20) + 1<<19, "5.5 MiB"},
		{1 << 30, "1.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{1 << 50, "1.0 PiB"},
		{1 << 60, "1.0 EiB"},
		{1<<63 - 1, "8.0 EiB"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
