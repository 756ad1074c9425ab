package patch

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

const (
	hintStale   = "the file differs from what the patch expects: read it again and make the patch against its current content"
	hintExists  = "patch the existing file instead (--- a/PATH), or delete it first"
	hintMissing = `create the file with a patch whose old name is /dev/null ("--- /dev/null")`
	hintBuilt   = "build file patches with Parse"
	hintFar     = "give the hunk the line numbers where its lines are in the file now"
)

// searchBudget bounds the lines Apply compares while it looks for where the
// hunks of a file patch apply, beyond a few passes over the file and the
// patch: hunks whose line numbers are far from their place could otherwise
// make it compare every line of a big file with every hunk.
const searchBudget = 1 << 26

// Apply applies fp to old, the content of its file, and returns the new
// content; nil means that the file does not exist, before (old) or after
// (the result of a Delete). It works like GNU patch with zero fuzz: the
// hunks apply in order, each where all its context and removed lines match
// exactly, at the line its header names shifted by the offset the hunk
// before it needed, or else at the nearest line before or after (the later
// one on a tie) that follows the previous hunk. Create needs old == nil;
// Delete needs old to be exactly the removed lines.
//
// Apply does no I/O and keeps neither old nor fp. Its errors are of kind
// errs.Conflict when the file is not what the patch expects, errs.NotFound
// when it is missing, errs.Invalid for a FilePatch Parse would not return.
func Apply(fp FilePatch, old []byte) ([]byte, error) {
	name := fp.Path()
	for i, h := range fp.Hunks {
		for _, l := range h.Lines {
			if l.Kind != ' ' && l.Kind != '-' && l.Kind != '+' {
				return nil, errs.New(errs.Invalid, hintBuilt, "%s: hunk %d has a line of kind %q", name, i+1, l.Kind)
			}
		}
	}
	switch fp.Op() {
	case Create:
		if old != nil {
			return nil, errs.New(errs.Conflict, hintExists, "%s: the patch creates this file, but it already exists", name)
		}
		if !singleKind(fp.Hunks, '+') {
			return nil, errs.New(errs.Invalid, hintBuilt, "%s: the patch creates this file, but has lines other than added ones", name)
		}
		return side(fp.Hunks, '+'), nil
	case Delete:
		if old == nil {
			return nil, errs.New(errs.NotFound, "", "%s: the patch deletes this file, but it does not exist", name)
		}
		if !singleKind(fp.Hunks, '-') {
			return nil, errs.New(errs.Invalid, hintBuilt, "%s: the patch deletes this file, but has lines other than removed ones", name)
		}
		if want := side(fp.Hunks, '-'); !bytes.Equal(want, old) {
			return nil, errs.New(errs.Conflict, hintStale, "%s: the patch deletes this file, but its content differs %s", name, firstDifference(want, old))
		}
		return nil, nil
	}
	if old == nil {
		return nil, errs.New(errs.NotFound, hintMissing, "%s: no such file", name)
	}
	return modify(name, fp.Hunks, old)
}

// side returns the concatenated lines of kind of hunks, non-nil.
func side(hunks []Hunk, kind byte) []byte {
	out := []byte{}
	for _, h := range hunks {
		for _, l := range h.Lines {
			if l.Kind == kind {
				out = append(out, l.Text...)
			}
		}
	}
	return out
}

// modify applies the hunks of a Modify to old.
func modify(name string, hunks []Hunk, old []byte) ([]byte, error) {
	lines := splitLines(string(old))
	// Lines are compared as small integers, one per distinct line.
	ids := make(map[string]int32, len(lines))
	text := make([]int32, len(lines))
	for i, l := range lines {
		id, ok := ids[l]
		if !ok {
			id = int32(len(ids))
			ids[l] = id
		}
		text[i] = id
	}
	s := &searcher{text: text, budget: searchBudget + 4*len(lines)}

	var out bytes.Buffer
	out.Grow(len(old))
	cursor := 0 // lines[:cursor] are done
	offset := 0 // where the previous hunk applied, relative to its header
	for k, h := range hunks {
		var pre []string // context and removed lines: what the file must hold
		for _, l := range h.Lines {
			if l.Kind != '+' {
				pre = append(pre, l.Text)
			}
		}
		base := h.OldStart - 1
		if h.OldLines == 0 || len(pre) == 0 {
			base = h.OldStart // a pure insertion names the line before it
		}
		s.budget += 4 * len(pre)
		pat := make([]int32, len(pre))
		found := true
		for i, l := range pre {
			id, ok := ids[l]
			if !ok {
				found = false // a line the file does not have: no need to search
				pat = pat[:i]
				break
			}
			pat[i] = id
		}
		at := -1
		if found {
			var err error
			if at, err = s.find(pat, base+offset, cursor); err != nil {
				return nil, errs.New(errs.Conflict, hintFar, "%s: hunk %d: gave up looking for where it applies, far from line %d that its header names", name, k+1, h.OldStart)
			}
		}
		if at < 0 {
			return nil, mismatch(name, k+1, lines, pre, s.nearest(pat, base+offset, cursor))
		}
		for _, l := range lines[cursor:at] {
			out.WriteString(l)
		}
		for _, l := range h.Lines {
			if l.Kind != '-' {
				out.WriteString(l.Text)
			}
		}
		cursor = at + len(pre)
		offset = at - base
	}
	for _, l := range lines[cursor:] {
		out.WriteString(l)
	}
	if out.Len() == 0 {
		return []byte{}, nil // an empty file, not a missing one
	}
	return out.Bytes(), nil
}

// splitLines splits s after each "\n"; the last line has none when s does
// not end with one.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	l := strings.SplitAfter(s, "\n")
	if l[len(l)-1] == "" {
		l = l[:len(l)-1]
	}
	return l
}

// mismatch explains why a hunk with lines pre does not apply: the first line
// that differs when the hunk is laid at line index at.
func mismatch(name string, hunk int, lines, pre []string, at int) error {
	for j, want := range pre {
		i := at + j
		var found string
		switch {
		case i >= len(lines):
			found = "the end of the file"
		case lines[i] != want:
			found = showLine(lines[i])
		default:
			continue
		}
		where := ""
		if j > 0 {
			where = fmt.Sprintf("line %d: ", i+1)
		}
		return errs.New(errs.Conflict, hintStale, "%s: hunk %d does not apply at line %d (%sexpected %s, found %s)",
			name, hunk, at+1, where, showLine(want), found)
	}
	// Not reached: a hunk that matches at would have applied there.
	return errs.New(errs.Conflict, hintStale, "%s: hunk %d does not apply at line %d", name, hunk, at+1)
}

// firstDifference describes the first line where got differs from want.
func firstDifference(want, got []byte) string {
	w, g := splitLines(string(want)), splitLines(string(got))
	for i := 0; ; i++ {
		switch {
		case i >= len(w) && i >= len(g):
			return ""
		case i >= len(w):
			return fmt.Sprintf("(line %d: expected the end of the file, found %s)", i+1, showLine(g[i]))
		case i >= len(g):
			return fmt.Sprintf("(line %d: expected %s, found the end of the file)", i+1, showLine(w[i]))
		case w[i] != g[i]:
			return fmt.Sprintf("(line %d: expected %s, found %s)", i+1, showLine(w[i]), showLine(g[i]))
		}
	}
}

// showLine quotes a line of a file without its "\n", and says so when it
// has none, since that alone can make two lines differ.
func showLine(l string) string {
	if t, ok := strings.CutSuffix(l, "\n"); ok {
		return show(t)
	}
	return show(l) + " without a newline at the end of the file"
}

// A searcher finds hunks in a file whose lines are given as integers.
type searcher struct {
	text   []int32
	budget int // line comparisons left
}

var errBudget = errors.New("search budget exhausted")

// find returns the index nearest to guess, and not before lo, where pat
// occurs in s.text, the later one on a tie; or -1.
func (s *searcher) find(pat []int32, guess, lo int) (int, error) {
	n, m := len(s.text), len(pat)
	hi := n - m // the last index where pat fits
	if m == 0 {
		return min(max(guess, lo), n), nil
	}
	if s.budget < 0 {
		return -1, errBudget
	}
	if hi < lo {
		return -1, nil
	}
	fwd := -1
	if from := max(guess, lo); from <= hi {
		fwd = s.forward(pat, from, hi)
	}
	// Before guess, only a strictly nearer match counts.
	bLo, bHi := lo, min(guess-1, hi)
	if fwd >= 0 {
		bLo = max(lo, 2*guess-fwd+1)
	}
	if bLo <= bHi {
		if bwd := s.backward(pat, bLo, bHi); bwd >= 0 {
			return bwd, nil
		}
	}
	return fwd, nil
}

// forward returns the first index in [from, hi] where pat occurs, or -1
// (Knuth-Morris-Pratt).
func (s *searcher) forward(pat []int32, from, hi int) int {
	fail := failure(pat, false)
	m := len(pat)
	k := 0
	for i := from; i < hi+m; i++ {
		for k > 0 && s.text[i] != pat[k] {
			k = fail[k-1]
		}
		if s.text[i] == pat[k] {
			k++
		}
		if k == m {
			s.budget -= 2 * (i + 1 - from)
			return i - m + 1
		}
	}
	s.budget -= 2 * (hi + m - from)
	return -1
}

// backward returns the last index in [lo, hi] where pat occurs, or -1.
func (s *searcher) backward(pat []int32, lo, hi int) int {
	fail := failure(pat, true)
	m := len(pat)
	k := 0
	for i := hi + m - 1; i >= lo; i-- {
		for k > 0 && s.text[i] != pat[m-1-k] {
			k = fail[k-1]
		}
		if s.text[i] == pat[m-1-k] {
			k++
		}
		if k == m {
			s.budget -= 2 * (hi + m - i)
			return i
		}
	}
	s.budget -= 2 * (hi + m - lo)
	return -1
}

// failure returns the KMP failure function of pat, or of pat reversed.
func failure(pat []int32, reversed bool) []int {
	m := len(pat)
	at := func(i int) int32 {
		if reversed {
			return pat[m-1-i]
		}
		return pat[i]
	}
	fail := make([]int, m)
	k := 0
	for i := 1; i < m; i++ {
		for k > 0 && at(i) != at(k) {
			k = fail[k-1]
		}
		if at(i) == at(k) {
			k++
		}
		fail[i] = k
	}
	return fail
}

// nearest returns where to report that pat does not apply: of the indexes
// not before lo, the one where the longest start of pat matches, the
// nearest to guess among equals (the later one on a tie); guess itself
// (within the file) when no start of pat matches or the search budget is
// spent. pat may be shorter than the hunk when the hunk has a line the file
// does not.
func (s *searcher) nearest(pat []int32, guess, lo int) int {
	n := len(s.text)
	guess = min(max(guess, lo), n)
	best, bestLen := guess, 0
	if len(pat) == 0 {
		return guess
	}
	for d := 0; s.budget > 0 && (guess+d < n || guess-d >= lo); d++ {
		s.budget--
		cands := [2]int{guess + d, guess - d}
		nc := 2
		if d == 0 {
			nc = 1
		}
		for _, i := range cands[:nc] {
			if i < lo || i >= n || s.text[i] != pat[0] {
				continue
			}
			l := 1
			for l < len(pat) && i+l < n && s.text[i+l] == pat[l] {
				l++
			}
			s.budget -= l
			if l > bestLen {
				best, bestLen = i, l
			}
		}
	}
	return best
}
