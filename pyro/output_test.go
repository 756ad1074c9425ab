package pyro

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCapturedOutput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  int64
		writes []string
		kept   string
	}{
		{"nothing", 10, nil, ""},
		{"under the limit", 10, []string{"abc", "def"}, "abcdef"},
		{"exactly the limit", 6, []string{"abc", "def"}, "abcdef"},
		{"one write over", 4, []string{"abcdef"}, "abcd"},
		{"crossing in a later write", 5, []string{"abc", "defgh", "ijk"}, "abcde"},
		{"after the limit", 3, []string{"abc", "d", "", "efg"}, "abc"},
		{"empty writes", 3, []string{"", "", "a"}, "a"},
		{"limit one", 1, []string{"", "xyz"}, "x"},
		{"zero limit keeps nothing", 0, []string{"abc"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var live bytes.Buffer
			c := &capturedOutput{limit: tc.limit, live: &live}
			var total int64
			for _, w := range tc.writes {
				n, err := c.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want all of it accepted", w, n, err)
				}
				total += int64(len(w))
			}
			if got := c.String(); got != tc.kept {
				t.Errorf("kept %q, want %q", got, tc.kept)
			}
			if c.total != total {
				t.Errorf("counted %d bytes, want %d", c.total, total)
			}
			// The live writer gets exactly what is kept.
			if live.String() != tc.kept {
				t.Errorf("live writer got %q, want %q", live.String(), tc.kept)
			}
			wantTrunc := total > int64(len(tc.kept))
			if got := c.truncated(total); got != wantTrunc {
				t.Errorf("truncated(%d) = %v, want %v", total, got, wantTrunc)
			}
			// The guest may claim more than it sent (its own limit cut it).
			if !c.truncated(int64(len(tc.kept)) + 1) {
				t.Error("truncated is false when the guest counted more than was kept")
			}
			// A guest claiming less than was sent does not hide a truncation.
			if got := c.truncated(0); got != wantTrunc {
				t.Errorf("truncated(0) = %v, want %v", got, wantTrunc)
			}
		})
	}
}

func TestCapturedOutputWithoutLiveWriter(t *testing.T) {
	c := &capturedOutput{limit: 4}
	c.Write([]byte("hello"))
	if c.String() != "hell" || !c.truncated(5) {
		t.Errorf("kept %q", c.String())
	}
}

func TestCapturedOutputKeepsNoReference(t *testing.T) {
	c := &capturedOutput{limit: 10}
	p := []byte("abc")
	c.Write(p)
	p[0] = 'X'
	if c.String() != "abc" {
		t.Errorf("kept %q after the caller reused its buffer", c.String())
	}
}

func TestCapturedOutputConcurrent(t *testing.T) {
	var live bytes.Buffer // written under c's lock only
	c := &capturedOutput{limit: 1000, live: &live}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			for range 100 {
				c.Write([]byte(fmt.Sprintf("%d", i)))
			}
		})
	}
	wg.Wait()
	if c.total != 1000 || len(c.String()) != 1000 || live.String() != c.String() {
		t.Errorf("total %d, kept %d, live %d", c.total, len(c.String()), live.Len())
	}
	for i := range 10 {
		if n := strings.Count(c.String(), fmt.Sprint(i)); n != 100 {
			t.Errorf("%d written 100 times, kept %d times", i, n)
		}
	}
}
