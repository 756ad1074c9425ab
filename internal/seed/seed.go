// Package seed turns what a user gives to seed or sync a workspace — a
// directory, or a .tar, .tar.gz or .tgz archive — into one normalised tar
// stream for the guest, after checking all of it: nothing is sent unless
// every entry is acceptable.
//
// Accepted: directories, regular files, symlinks (sent as links, never
// followed) and hard links to earlier files. Refused, with the entry
// named: absolute names, names with "..", entries under a path an earlier
// entry made a symlink (a symlink then a file through it), device nodes,
// FIFOs and sockets.
package seed

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

// Kinds of seed.
const (
	ModeEmpty     = "empty"
	ModeDirectory = "directory"
	ModeTar       = "tar_archive"
)

// Limits bound a seed.
type Limits struct {
	MaxFiles int64
	MaxBytes int64
}

// DefaultLimits are the bounds of a seed unless configured.
var DefaultLimits = Limits{MaxFiles: 1 << 20, MaxBytes: 16 << 30}

// Stats describe a seed.
type Stats struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Source is a checked seed, ready to be written as a tar stream.
type Source struct {
	Path  string
	Mode  string
	Stats Stats
	gzip  bool
}

// Open checks the seed at p completely and returns it.
func Open(ctx context.Context, p string, lim Limits) (*Source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "give a directory, .tar, .tar.gz or .tgz that exists", "seed %s", p)
	}
	s := &Source{Path: p}
	switch {
	case fi.IsDir():
		s.Mode = ModeDirectory
	case fi.Mode().IsRegular():
		lower := strings.ToLower(p)
		switch {
		case strings.HasSuffix(lower, ".tar"):
		case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
			s.gzip = true
		default:
			return nil, errs.New(errs.Invalid, "give a directory, .tar, .tar.gz or .tgz", "seed %s is neither a directory nor a .tar, .tar.gz or .tgz archive", p)
		}
		s.Mode = ModeTar
	default:
		return nil, errs.New(errs.Invalid, "give a directory, .tar, .tar.gz or .tgz", "seed %s is not a regular file or directory", p)
	}
	// A dry run checks everything before anything is sent.
	st, err := s.write(ctx, nil, lim)
	if err != nil {
		return nil, err
	}
	s.Stats = st
	return s, nil
}

// WriteTar writes the seed as a normalised tar stream to w.
func (s *Source) WriteTar(ctx context.Context, w io.Writer, lim Limits) (Stats, error) {
	return s.write(ctx, w, lim)
}

func (s *Source) write(ctx context.Context, w io.Writer, lim Limits) (Stats, error) {
	var tw *tar.Writer
	if w != nil {
		tw = tar.NewWriter(w)
	}
	chk := &checker{lim: lim, links: map[string]bool{}, files: map[string]bool{}, source: s.Path}
	var err error
	if s.Mode == ModeDirectory {
		err = s.walkDir(ctx, chk, tw)
	} else {
		err = s.walkTar(ctx, chk, tw)
	}
	if err == nil && tw != nil {
		err = tw.Close()
	}
	return chk.stats, err
}

type checker struct {
	lim    Limits
	stats  Stats
	links  map[string]bool // paths that are symlinks
	files  map[string]bool // paths that are regular files (hard link targets)
	source string
}

func (c *checker) refuse(name, format string, args ...any) error {
	return errs.New(errs.Invalid, "fix the seed and try again; nothing was changed",
		"seed %s: entry %q %s", c.source, name, fmt.Sprintf(format, args...))
}

// check validates one entry's name and kind and returns its clean name.
func (c *checker) check(name string, typ byte, size int64) (string, error) {
	if strings.ContainsRune(name, 0) || len(name) > 4096 {
		return "", c.refuse(name, "has a NUL byte or is too long")
	}
	if path.IsAbs(name) || strings.HasPrefix(name, "/") {
		return "", c.refuse(name, "is an absolute path")
	}
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if part == ".." {
			return "", c.refuse(name, "contains ..")
		}
	}
	if clean == "." {
		return clean, nil
	}
	if !fs.ValidPath(clean) {
		return "", c.refuse(name, "is not a relative path")
	}
	for dir := path.Dir(clean); dir != "."; dir = path.Dir(dir) {
		if c.links[dir] {
			return "", c.refuse(name, "lies under %q, which an earlier entry made a symlink", dir)
		}
	}
	switch typ {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock:
		return "", c.refuse(name, "is a device node")
	case tar.TypeFifo:
		return "", c.refuse(name, "is a FIFO")
	default:
		return "", c.refuse(name, "has an unsupported type %q", typ)
	}
	c.stats.Files++
	c.stats.Bytes += size
	if c.stats.Files > c.lim.MaxFiles {
		return "", errs.New(errs.Invalid, "seed a smaller tree", "seed %s has more than %d entries", c.source, c.lim.MaxFiles)
	}
	if c.stats.Bytes > c.lim.MaxBytes {
		return "", errs.New(errs.Invalid, "seed a smaller tree", "seed %s holds more than %d bytes", c.source, c.lim.MaxBytes)
	}
	delete(c.links, clean)
	delete(c.files, clean)
	switch typ {
	case tar.TypeSymlink:
		c.links[clean] = true
	case tar.TypeReg:
		c.files[clean] = true
	}
	return clean, nil
}

func header(name string, typ byte, mode fs.FileMode, size int64, mtime time.Time, link string) *tar.Header {
	h := &tar.Header{
		Name: name, Typeflag: typ, Mode: int64(mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)),
		// Whole seconds keep headers plain ustar (no PAX record per file),
		// which halves what a tree of small files sends and parses.
		Size: size, ModTime: mtime.Truncate(time.Second), Linkname: link,
	}
	if mode&fs.ModeSetuid != 0 {
		h.Mode |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		h.Mode |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	h.Mode &= 0o7777
	if typ == tar.TypeDir {
		h.Name += "/"
	}
	return h
}

func (s *Source) walkDir(ctx context.Context, c *checker, tw *tar.Writer) error {
	// WalkDir does not follow a root that is a symlink: resolve it, or a
	// seed given as a link to a directory would be silently empty.
	root, err := filepath.EvalSymlinks(s.Path)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "", "reading the seed")
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "", "reading the seed")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		var typ byte
		var link string
		var size int64
		switch m := info.Mode(); {
		case m.IsDir():
			typ = tar.TypeDir
		case m.IsRegular():
			typ, size = tar.TypeReg, info.Size()
		case m&fs.ModeSymlink != 0:
			typ = tar.TypeSymlink
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case m&fs.ModeDevice != 0:
			typ = tar.TypeChar
		case m&fs.ModeNamedPipe != 0:
			typ = tar.TypeFifo
		default:
			return c.refuse(name, "is a socket or other special file")
		}
		clean, err := c.check(name, typ, size)
		if err != nil || tw == nil {
			return err
		}
		if err := tw.WriteHeader(header(clean, typ, info.Mode(), size, info.ModTime(), link)); err != nil {
			return err
		}
		if typ == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, io.LimitReader(f, size))
			f.Close()
			if err == nil && n != size {
				err = fmt.Errorf("%s changed size while it was read", p)
			}
			return err
		}
		return nil
	})
}

func (s *Source) walkTar(ctx context.Context, c *checker, tw *tar.Writer) error {
	f, err := os.Open(s.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if s.gzip {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "check the archive", "seed %s is not a gzip file", s.Path)
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "check the archive", "seed %s is not a valid tar archive", s.Path)
		}
		typ := h.Typeflag
		if typ == tar.TypeRegA {
			typ = tar.TypeReg
		}
		if typ == tar.TypeXGlobalHeader {
			continue
		}
		size := int64(0)
		if typ == tar.TypeReg {
			size = h.Size
		}
		clean, err := c.check(h.Name, typ, size)
		if err != nil {
			return err
		}
		if clean == "." {
			continue
		}
		link := h.Linkname
		if typ == tar.TypeLink {
			target := path.Clean(strings.TrimPrefix(link, "./"))
			if !fs.ValidPath(target) || !c.files[target] {
				return c.refuse(h.Name, "is a hard link to %q, which is not an earlier file of the archive", link)
			}
			// A later symlink over one of the target's directories took
			// the file away.
			for dir := path.Dir(target); dir != "."; dir = path.Dir(dir) {
				if c.links[dir] {
					return c.refuse(h.Name, "is a hard link to %q, which lies under %q, which an earlier entry made a symlink", link, dir)
				}
			}
			link = target
		}
		if tw == nil {
			continue
		}
		if err := tw.WriteHeader(header(clean, typ, fs.FileMode(h.Mode)&fs.ModePerm|modeBits(h.Mode), size, h.ModTime, link)); err != nil {
			return err
		}
		if typ == tar.TypeReg {
			if n, err := io.Copy(tw, io.LimitReader(tr, size)); err != nil || n != size {
				return errs.New(errs.Invalid, "check the archive", "seed %s: entry %q is truncated", s.Path, h.Name)
			}
		}
	}
}

func modeBits(m int64) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}
