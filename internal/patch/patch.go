// Package patch parses and applies unified diffs: the patch of
// `pyro workspace patch apply`, which comes from an untrusted caller (an MCP
// client, often a model).
//
// Parse is strict and bounded: it refuses what it cannot apply exactly
// (binary patches, renames, symbolic links, unsafe paths) and hunks whose
// line counts do not match their headers, with an error that names the patch
// line and says how to fix it. Apply is pure and works like GNU patch with
// zero fuzz: every context and removed line of a hunk must match exactly, at
// the line the hunk names or at the nearest offset from it.
//
// The patches textdiff.Unified writes parse and apply back exactly.
package patch

import "io/fs"

// Bounds on what Parse accepts.
const (
	MaxFiles = 10_000    // file patches in one patch
	MaxLines = 1_000_000 // lines of patch text
)

// maxPathBytes bounds a file name, like PATH_MAX.
const maxPathBytes = 4096

// Op is what a file patch does to its file.
type Op int

const (
	Modify Op = iota // change an existing file
	Create           // create a file that does not exist (old name /dev/null)
	Delete           // delete a file whose content the patch holds (new name /dev/null)
)

func (o Op) String() string {
	switch o {
	case Modify:
		return "modify"
	case Create:
		return "create"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// A FilePatch is the change of one file.
type FilePatch struct {
	// OldPath and NewPath are clean relative paths ("a/" and "b/" prefixes
	// stripped), or "" for /dev/null. When both are set they are equal: Parse
	// refuses renames.
	OldPath, NewPath string
	// NewMode is the permission a git patch gives the file ("new file mode"
	// or "new mode" line): 0o644 or 0o755, or 0 when the patch sets none.
	NewMode fs.FileMode
	// Hunks are in patch order. A Create or Delete has one hunk, or none for
	// an empty file; a Modify may have none when it only changes the mode.
	Hunks []Hunk
}

// Op tells whether fp modifies, creates or deletes its file.
func (fp FilePatch) Op() Op {
	switch {
	case fp.OldPath == "":
		return Create
	case fp.NewPath == "":
		return Delete
	}
	return Modify
}

// Path is the path of the file fp changes.
func (fp FilePatch) Path() string {
	if fp.NewPath != "" {
		return fp.NewPath
	}
	return fp.OldPath
}

// A Hunk is one "@@ -OldStart,OldLines +NewStart,NewLines @@" block.
// Line numbers are 1-based; a side with no lines names the line before the
// hunk (0 for the start of the file), as diff does.
type Hunk struct {
	OldStart, OldLines int
	NewStart, NewLines int
	Lines              []Line
}

// A Line is one line of a hunk.
type Line struct {
	// Kind is ' ' for a context line, '-' for a removed one, '+' for an
	// added one.
	Kind byte
	// Text is the line as it is in the file, with its "\n" (and any "\r"
	// before it). It has no "\n" when it is the last line of a file that
	// does not end with a newline ("\ No newline at end of file" in the
	// patch).
	Text string
}
