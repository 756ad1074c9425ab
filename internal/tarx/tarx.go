// Package tarx extracts tar streams into a directory without ever writing
// outside it: the guest uses it for what the host sends into /workspace,
// and the host for what the guest exports.
package tarx

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

// Limits bound an extraction.
type Limits struct {
	MaxBytes int64
	MaxFiles int64
	// ConfineSymlinks refuses symlinks whose target leaves the
	// destination (absolute, or climbing above it with ".."): for trees
	// that land on the host, where a later reader might follow them.
	ConfineSymlinks bool
}

// Stats count what was extracted.
type Stats struct {
	Files int64
	Bytes int64
}

// Extract unpacks a tar stream into dest. Every name must be local;
// os.Root refuses anything that would resolve outside dest, including
// through a symlink an earlier entry made. Device nodes and FIFOs are
// refused.
func Extract(ctx context.Context, dest *os.Root, r io.Reader, lim Limits) (Stats, error) {
	var res Stats
	tr := tar.NewReader(r)
	type dirMeta struct {
		name string
		mode fs.FileMode
		t    time.Time
	}
	var dirs []dirMeta
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return res, fmt.Errorf("entry %q is not a relative path inside the destination", h.Name)
		}
		res.Files++
		if res.Files > lim.MaxFiles {
			return res, fmt.Errorf("more than %d entries", lim.MaxFiles)
		}
		// FileInfo turns the tar's Unix mode bits (04000...) into Go's.
		mode := h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := dest.MkdirAll(name, 0o755); err != nil {
				return res, err
			}
			// Mode and time last: a read-only directory must still take
			// its entries.
			dirs = append(dirs, dirMeta{name, mode, h.ModTime})
		case tar.TypeReg:
			if err := mkParent(dest, name); err != nil {
				return res, err
			}
			removeIfNotDir(dest, name)
			f, err := dest.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return res, err
			}
			n, err := io.Copy(f, io.LimitReader(tr, lim.MaxBytes-res.Bytes+1))
			res.Bytes += n
			if err == nil && res.Bytes > lim.MaxBytes {
				err = fmt.Errorf("more than %d bytes", lim.MaxBytes)
			}
			if err == nil {
				err = f.Chmod(mode)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return res, err
			}
			dest.Chtimes(name, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			if lim.ConfineSymlinks && !linkStaysInside(name, h.Linkname) {
				return res, fmt.Errorf("symlink %q points outside the tree (to %q)", h.Name, h.Linkname)
			}
			if lim.ConfineSymlinks {
				// Its target is checked from where its name says it is.
				if dir, ok := underSymlink(dest, name); ok {
					return res, fmt.Errorf("symlink %q lies under %q, which is a symlink", h.Name, dir)
				}
			}
			if err := mkParent(dest, name); err != nil {
				return res, err
			}
			dest.RemoveAll(name)
			if err := dest.Symlink(h.Linkname, name); err != nil {
				return res, err
			}
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(h.Linkname, "./"))
			if !fs.ValidPath(target) {
				return res, fmt.Errorf("hard link %q points outside the destination", h.Name)
			}
			if lim.ConfineSymlinks {
				// A hard link to a symlink is that symlink at another
				// place, from which its target may lead elsewhere.
				if fi, err := dest.Lstat(target); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
					return res, fmt.Errorf("hard link %q is to the symlink %q", h.Name, h.Linkname)
				}
			}
			if err := mkParent(dest, name); err != nil {
				return res, err
			}
			removeIfNotDir(dest, name)
			if err := dest.Link(target, name); err != nil {
				return res, err
			}
		default:
			return res, fmt.Errorf("entry %q is a device node, FIFO or other special file, which a workspace cannot hold", h.Name)
		}
	}
	// Directory modes and times last, deepest first: creating entries
	// inside changed the times, and needed write permission.
	for i := len(dirs) - 1; i >= 0; i-- {
		dest.Chmod(dirs[i].name, dirs[i].mode|fs.ModeDir)
		dest.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t)
	}
	return res, nil
}

func mkParent(r *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		return r.MkdirAll(dir, 0o755)
	}
	return nil
}

func removeIfNotDir(r *os.Root, name string) {
	if fi, err := r.Lstat(name); err == nil && !fi.IsDir() {
		r.Remove(name)
	}
}

// linkStaysInside says whether a symlink at name with target resolves
// inside the tree. The check is lexical, which is only sound while no
// ".." follows a symlink: so ".." may only lead the target (after a
// component that may be a symlink it could climb out: "d/.." with
// d -> "."), and the caller checks that name's directories are real ones.
func linkStaysInside(name, target string) bool {
	if target == "" || path.IsAbs(target) {
		return false
	}
	down := false
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
		case "..":
			if down {
				return false
			}
		default:
			down = true
		}
	}
	return fs.ValidPath(path.Clean(path.Join(path.Dir(name), target)))
}

// underSymlink returns the first directory of name that is a symlink in r.
func underSymlink(r *os.Root, name string) (string, bool) {
	dir := path.Dir(name)
	if dir == "." {
		return "", false
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if fi, err := r.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return p, true
		}
	}
	return "", false
}
