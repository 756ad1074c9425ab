package patch

import (
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

// Hints of parse errors: what the caller should send instead.
const (
	hintFormat = `send a unified diff: a "--- a/PATH" line, a "+++ b/PATH" line, then hunks that start with "@@ -OLD_START,OLD_LINES +NEW_START,NEW_LINES @@"`
	hintCounts = `make the counts of the @@ line match the hunk: OLD_LINES counts its context (' ') and removed ('-') lines, NEW_LINES its context and added ('+') lines; every line of a hunk starts with ' ', '-' or '+'`
	hintPath   = "name files by their path relative to /workspace, such as a/src/app.py and b/src/app.py"
	hintBinary = "binary files cannot be patched: copy them into the workspace with sync push"
	hintRename = "write a rename as the deletion of the old file and the creation of the new one"
	hintKind   = "patch only regular files"
	hintSplit  = "split the change into smaller patches"
	hintOnce   = "put all the hunks of a file under one pair of --- and +++ lines"
)

// Parse parses a patch of unified diffs: plain ones ("--- a/PATH",
// "+++ b/PATH", hunks) and git ones ("diff --git" headers, with mode lines
// and the creation or deletion of empty files). Text outside file patches,
// such as a commit message, is skipped.
//
// It refuses binary patches, renames and copies, symbolic links and
// submodules, a file patched twice, unsafe file names (absolute, with a ".."
// component, NUL or control characters, invalid UTF-8, empty), hunks whose
// lines do not match the counts of their header, and patches longer than
// MaxLines lines or MaxFiles files. Content lines may hold any bytes, "\r"
// included, and are kept as they are.
//
// Errors are of kind errs.Invalid and name the patch line.
func Parse(patch []byte) ([]FilePatch, error) {
	n := bytes.Count(patch, []byte{'\n'})
	if len(patch) > 0 && patch[len(patch)-1] != '\n' {
		n++
	}
	if n > MaxLines {
		return nil, errs.New(errs.Invalid, hintSplit, "the patch has %d lines, more than the limit of %d", n, MaxLines)
	}
	lines := strings.SplitAfter(string(patch), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	p := &parser{lines: lines, seen: map[string]int{}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	if len(p.files) == 0 {
		return nil, errs.New(errs.Invalid, hintFormat, "the patch changes no file: it has no --- and +++ lines")
	}
	return p.files, nil
}

type parser struct {
	lines []string // with their "\n"; the last one may lack it
	i     int      // index of the next line
	files []FilePatch
	seen  map[string]int // path -> patch line of the header that changes it
}

func (p *parser) errorf(line int, hint, format string, args ...any) error {
	return errs.New(errs.Invalid, hint, "patch line %d: %s", line, fmt.Sprintf(format, args...))
}

func (p *parser) parse() error {
	for p.i < len(p.lines) {
		line := eol(p.lines[p.i])
		var err error
		switch {
		case strings.HasPrefix(line, "diff --git "):
			err = p.gitFile()
		case strings.HasPrefix(line, "--- ") && p.i+1 < len(p.lines) && strings.HasPrefix(p.lines[p.i+1], "+++ "):
			err = p.plainFile()
		case strings.HasPrefix(line, "@@"):
			err = p.errorf(p.i+1, hintFormat, "hunk header %s without a --- and a +++ line before it", show(line))
		case isBinary(line):
			err = p.errorf(p.i+1, hintBinary, "binary patches are not supported (%s)", show(line))
		default:
			p.i++ // not part of a diff: a commit message, an "Index:" line, a blank line
		}
		if err != nil {
			return err
		}
		if len(p.files) > MaxFiles {
			return errs.New(errs.Invalid, hintSplit, "the patch changes more than %d files", MaxFiles)
		}
	}
	return nil
}

// plainFile parses a file patch that starts with "---" and "+++" lines.
func (p *parser) plainFile() error {
	start := p.i + 1
	var fp FilePatch
	var err error
	if fp.OldPath, err = p.headerPath(start, p.lines[p.i][len("--- "):], "a/"); err != nil {
		return err
	}
	if fp.NewPath, err = p.headerPath(start+1, p.lines[p.i+1][len("+++ "):], "b/"); err != nil {
		return err
	}
	p.i += 2
	return p.file(start, &fp, true)
}

// gitFile parses a file patch that starts with a "diff --git" line.
func (p *parser) gitFile() error {
	start := p.i + 1
	gitOld, gitNew, gitOK := splitGitNames(strings.TrimPrefix(eol(p.lines[p.i]), "diff --git "))
	p.i++
	var (
		fp           FilePatch
		isNew, isDel bool
		hasNames     bool
	)
header:
	for ; p.i < len(p.lines); p.i++ {
		n := p.i + 1
		line := eol(p.lines[p.i])
		var err error
		switch {
		case strings.HasPrefix(line, "old mode "):
			_, err = p.mode(n, line[len("old mode "):])
		case strings.HasPrefix(line, "new mode "):
			fp.NewMode, err = p.mode(n, line[len("new mode "):])
		case strings.HasPrefix(line, "deleted file mode "):
			isDel = true
			_, err = p.mode(n, line[len("deleted file mode "):])
		case strings.HasPrefix(line, "new file mode "):
			isNew = true
			fp.NewMode, err = p.mode(n, line[len("new file mode "):])
		case strings.HasPrefix(line, "rename "), strings.HasPrefix(line, "copy "):
			err = p.errorf(n, hintRename, "renaming or copying files is not supported (%s)", show(line))
		case strings.HasPrefix(line, "similarity index "), strings.HasPrefix(line, "dissimilarity index "),
			strings.HasPrefix(line, "index "):
		case isBinary(line):
			err = p.errorf(n, hintBinary, "binary patches are not supported (%s)", show(line))
		case strings.HasPrefix(line, "--- "):
			if p.i+1 >= len(p.lines) || !strings.HasPrefix(p.lines[p.i+1], "+++ ") {
				return p.errorf(n, hintFormat, "a --- line must be followed by a +++ line")
			}
			if fp.OldPath, err = p.headerPath(n, p.lines[p.i][len("--- "):], "a/"); err != nil {
				return err
			}
			if fp.NewPath, err = p.headerPath(n+1, p.lines[p.i+1][len("+++ "):], "b/"); err != nil {
				return err
			}
			p.i += 2
			hasNames = true
			break header
		default:
			break header
		}
		if err != nil {
			return err
		}
	}
	if isNew && isDel {
		return p.errorf(start, hintFormat, "a file patch cannot both create and delete its file")
	}
	if !hasNames && p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], "@@") {
		return p.errorf(p.i+1, hintFormat, "the hunks of a diff --git file patch need a --- and a +++ line before them")
	}
	if !hasNames && !gitOK {
		return p.errorf(start, hintFormat, "cannot tell the file name from this diff --git line; add --- and +++ lines")
	}
	if gitOK {
		// The names of the diff --git line, checked against the --- and
		// +++ lines or used when there are none.
		oldPath, err := p.path(start, gitOld, "a/")
		if err != nil {
			return err
		}
		newPath, err := p.path(start, gitNew, "b/")
		if err != nil {
			return err
		}
		if !hasNames {
			fp.OldPath, fp.NewPath = oldPath, newPath
			if isNew {
				fp.OldPath = ""
			}
			if isDel {
				fp.NewPath = ""
			}
		} else if fp.OldPath != "" && fp.OldPath != oldPath || fp.NewPath != "" && fp.NewPath != newPath {
			return p.errorf(start, hintFormat, "the --- and +++ lines name another file than the diff --git line")
		}
	}
	if isNew && fp.OldPath != "" {
		return p.errorf(start, hintFormat, `%s has a "new file mode" line, so its --- line must be "--- /dev/null"`, fp.OldPath)
	}
	if isDel && fp.NewPath != "" {
		return p.errorf(start, hintFormat, `%s has a "deleted file mode" line, so its +++ line must be "+++ /dev/null"`, fp.NewPath)
	}
	return p.file(start, &fp, hasNames)
}

// file checks the names of fp, whose header starts at patch line start,
// parses its hunks if it has a --- and +++ header, checks that they fit
// what fp does to its file, and adds it to the result.
func (p *parser) file(start int, fp *FilePatch, hasHunks bool) error {
	switch {
	case fp.OldPath == "" && fp.NewPath == "":
		return p.errorf(start, hintFormat, "both file names are /dev/null")
	case fp.OldPath != "" && fp.NewPath != "" && fp.OldPath != fp.NewPath:
		return p.errorf(start, hintRename, "the old and new names differ (%q and %q), and renaming files is not supported", fp.OldPath, fp.NewPath)
	}
	path := fp.Path()
	if first, ok := p.seen[path]; ok {
		return p.errorf(start, hintOnce, "%s is patched twice (first at patch line %d)", path, first)
	}
	p.seen[path] = start
	if hasHunks {
		if err := p.hunks(fp); err != nil {
			return err
		}
	}
	switch fp.Op() {
	case Create:
		if !singleKind(fp.Hunks, '+') {
			return p.errorf(start, hintFormat, "%s is created (--- /dev/null), so it must have one hunk of added lines only, @@ -0,0 +1,N @@", path)
		}
	case Delete:
		if !singleKind(fp.Hunks, '-') {
			return p.errorf(start, hintFormat, "%s is deleted (+++ /dev/null), so it must have one hunk of removed lines only, @@ -1,N +0,0 @@", path)
		}
	case Modify:
		if len(fp.Hunks) == 0 && fp.NewMode == 0 {
			return p.errorf(start, hintFormat, "the diff --git header of %s changes nothing", path)
		}
	}
	p.files = append(p.files, *fp)
	return nil
}

// singleKind tells whether hunks is at most one hunk with lines of kind only.
func singleKind(hunks []Hunk, kind byte) bool {
	if len(hunks) > 1 {
		return false
	}
	for _, h := range hunks {
		for _, l := range h.Lines {
			if l.Kind != kind {
				return false
			}
		}
	}
	return true
}

// hunks parses the hunks of fp, which start at the current line.
func (p *parser) hunks(fp *FilePatch) error {
	name := fp.Path()
	var oldEnd, newEnd int // patch lines of the "\ No newline" lines that end each side
	for {
		// Blank lines between hunks are harmless: skip them.
		j := p.skipBlank(p.i)
		if j >= len(p.lines) || !strings.HasPrefix(p.lines[j], "@@") {
			break
		}
		p.i = j
		hdrLine := p.i + 1
		hdr := eol(p.lines[p.i])
		if strings.HasPrefix(hdr, "@@@") {
			return p.errorf(hdrLine, hintFormat, "combined diffs (@@@) are not supported")
		}
		h, ok := parseHunkHeader(hdr)
		switch {
		case !ok:
			return p.errorf(hdrLine, hintFormat, "malformed hunk header %s", show(hdr))
		case h.OldLines > MaxLines || h.NewLines > MaxLines:
			return p.errorf(hdrLine, hintCounts, "hunk header %s counts more lines than a patch can hold", show(hdr))
		case h.OldLines == 0 && h.NewLines == 0:
			return p.errorf(hdrLine, hintCounts, "hunk header %s counts no lines", show(hdr))
		case h.OldLines > 0 && h.OldStart == 0 || h.NewLines > 0 && h.NewStart == 0:
			return p.errorf(hdrLine, hintCounts, "hunk header %s: line numbers start at 1", show(hdr))
		}
		p.i++
		var nOld, nNew int
		for p.i < len(p.lines) {
			raw := p.lines[p.i]
			n := p.i + 1
			if raw[0] == '\\' {
				// "\ No newline at end of file" (or its translation): the
				// line before it is the last of its file and has no "\n".
				if len(h.Lines) == 0 {
					return p.errorf(n, hintFormat, `%s must follow the last line of a file`, show(eol(raw)))
				}
				last := &h.Lines[len(h.Lines)-1]
				if last.Text == "\n" {
					return p.errorf(n, hintFormat, `an empty line cannot be the last line of a file without a newline: remove the "\ No newline at end of file" line`)
				}
				if !strings.HasSuffix(last.Text, "\n") {
					return p.errorf(n, hintFormat, `two "\ No newline at end of file" lines after the same line`)
				}
				last.Text = last.Text[:len(last.Text)-1]
				if last.Kind != '+' {
					oldEnd = n
				}
				if last.Kind != '-' {
					newEnd = n
				}
				p.i++
				continue
			}
			if nOld == h.OldLines && nNew == h.NewLines {
				break
			}
			kind, text := raw[0], raw[1:]
			switch kind {
			case ' ', '-', '+':
			case '\n':
				// An empty context line that lost its space, as editors
				// and some diff tools leave it.
				kind, text = ' ', raw
			default:
				return p.errorf(hdrLine, hintCounts, "hunk header %s of %s counts %d old and %d new lines, but the hunk ends at patch line %d (%s) after %d old and %d new lines",
					show(hdr), name, h.OldLines, h.NewLines, n, show(eol(raw)), nOld, nNew)
			}
			if !strings.HasSuffix(text, "\n") {
				text += "\n" // the last line of the patch, whose own newline is missing
			}
			if kind != '+' {
				switch {
				case nOld == h.OldLines:
					return p.errorf(n, hintCounts, "hunk header %s (patch line %d) of %s counts %d old lines (context and removed), but the hunk has more",
						show(hdr), hdrLine, name, h.OldLines)
				case oldEnd != 0:
					return p.errorf(n, hintFormat, `%s has a line after the end of its old file ("\ No newline at end of file" at patch line %d)`, name, oldEnd)
				}
				nOld++
			}
			if kind != '-' {
				switch {
				case nNew == h.NewLines:
					return p.errorf(n, hintCounts, "hunk header %s (patch line %d) of %s counts %d new lines (context and added), but the hunk has more",
						show(hdr), hdrLine, name, h.NewLines)
				case newEnd != 0:
					return p.errorf(n, hintFormat, `%s has a line after the end of its new file ("\ No newline at end of file" at patch line %d)`, name, newEnd)
				}
				nNew++
			}
			h.Lines = append(h.Lines, Line{Kind: kind, Text: text})
			p.i++
		}
		if nOld != h.OldLines || nNew != h.NewLines {
			return p.errorf(hdrLine, hintCounts, "hunk header %s of %s counts %d old and %d new lines, but the patch ends after %d old and %d new lines",
				show(hdr), name, h.OldLines, h.NewLines, nOld, nNew)
		}
		fp.Hunks = append(fp.Hunks, h)
	}
	if len(fp.Hunks) == 0 {
		return p.errorf(p.i+1, hintFormat, "%s has no hunk after its --- and +++ lines", name)
	}
	// A hunk line right after the last hunk means a header that counts too
	// few lines; taking the rest for text between patches would drop it.
	if j := p.skipBlank(p.i); j < len(p.lines) && p.strayHunkLine(j) {
		h := fp.Hunks[len(fp.Hunks)-1]
		return p.errorf(j+1, hintCounts, "%s follows hunk %d of %s, whose header @@ -%d,%d +%d,%d @@ counts fewer lines",
			show(eol(p.lines[j])), len(fp.Hunks), name, h.OldStart, h.OldLines, h.NewStart, h.NewLines)
	}
	return nil
}

// strayHunkLine tells whether line i looks like a hunk line and is not the
// header of the next file patch or the signature line of git format-patch.
func (p *parser) strayHunkLine(i int) bool {
	line := p.lines[i]
	switch {
	case line[0] != ' ' && line[0] != '-' && line[0] != '+':
		return false
	case strings.HasPrefix(line, "--- ") && i+1 < len(p.lines) && strings.HasPrefix(p.lines[i+1], "+++ "):
		return false
	case eol(line) == "-- ":
		return false
	}
	return true
}

func (p *parser) skipBlank(i int) int {
	for i < len(p.lines) && eol(p.lines[i]) == "" {
		i++
	}
	return i
}

// parseHunkHeader parses "@@ -l[,s] +l[,s] @@[ section heading]".
func parseHunkHeader(s string) (Hunk, bool) {
	var h Hunk
	rest, ok := strings.CutPrefix(s, "@@ -")
	if !ok {
		return h, false
	}
	if h.OldStart, h.OldLines, rest, ok = parseRange(rest); !ok {
		return h, false
	}
	if rest, ok = strings.CutPrefix(rest, " +"); !ok {
		return h, false
	}
	if h.NewStart, h.NewLines, rest, ok = parseRange(rest); !ok {
		return h, false
	}
	if rest, ok = strings.CutPrefix(rest, " @@"); !ok || rest != "" && rest[0] != ' ' {
		return h, false
	}
	return h, true
}

// parseRange parses "start[,count]" at the start of s; count defaults to 1.
func parseRange(s string) (start, count int, rest string, ok bool) {
	if start, s, ok = parseNumber(s); !ok {
		return 0, 0, "", false
	}
	count = 1
	if s, ok = strings.CutPrefix(s, ","); ok {
		if count, s, ok = parseNumber(s); !ok {
			return 0, 0, "", false
		}
	}
	return start, count, s, true
}

// parseNumber parses up to 9 decimal digits, so that the number fits any int.
func parseNumber(s string) (int, string, bool) {
	i := 0
	for i < len(s) && i < 10 && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 9 {
		return 0, "", false
	}
	n, _ := strconv.Atoi(s[:i])
	return n, s[i:], true
}

// mode parses the octal mode of a git mode line: only regular files.
func (p *parser) mode(line int, s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, p.errorf(line, hintFormat, "malformed file mode %s", show(s))
	}
	switch v & 0o170000 {
	case 0o100000:
		if v&0o111 != 0 {
			return 0o755, nil
		}
		return 0o644, nil
	case 0o120000:
		return 0, p.errorf(line, hintKind, "symbolic links cannot be patched")
	case 0o160000:
		return 0, p.errorf(line, hintKind, "submodules cannot be patched")
	}
	return 0, p.errorf(line, hintKind, "file mode %s is not a regular file's", s)
}

func isBinary(line string) bool {
	return strings.HasPrefix(line, "GIT binary patch") ||
		strings.HasPrefix(line, "Binary files ") && strings.HasSuffix(line, " differ")
}

// eol returns a line without its "\n" or "\r\n".
func eol(line string) string {
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r")
}

// show quotes a line of the patch or file for an error message, cut short
// when long.
func show(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
