// Package flatten turns the layers of an OCI image into one root filesystem
// directory. Each layer, an uncompressed tar stream, is extracted in order
// onto the same directory, and the OCI whiteouts of a layer remove what the
// layers below it put there. pyro then adds its own files and makes the
// directory an ext4 image with mkfs.ext4 -d.
//
// Layers come from registries: they are hostile. Every entry is checked and
// bounded before it touches the disk, and nothing outside the root directory
// is ever read or written:
//
//   - Names are cleaned as if root were "/": a leading "/" or "./" is
//     dropped. Names with a ".." component, a NUL byte, more than 4096 bytes,
//     a component of more than 255 bytes, more than 256 components, or a
//     whiteout name as a directory are refused.
//   - Every path is resolved below root the way the guest will resolve it:
//     symlinks placed by earlier entries or layers are followed as if root
//     were "/", so "a -> /etc" then "a/passwd" writes root/etc/passwd, never
//     the host's. The kernel does this with openat2(RESOLVE_IN_ROOT); where
//     openat2 is missing (Linux < 5.6, or a seccomp filter that refuses it)
//     the same walk is done in user space one component at a time with
//     O_PATH|O_NOFOLLOW, so an image flattens the same way on every host.
//     A path whose symlink leads nowhere (or loops) is refused, not created.
//   - The last component of a path is never followed. Files are created with
//     O_CREAT|O_EXCL|O_NOFOLLOW relative to a directory descriptor, and every
//     other change goes through the *at system calls with the same rule. An
//     entry that replaces one of another type removes the old one first
//     (recursively, without following symlinks); a directory over a directory
//     merges, and a directory over a symlink replaces the symlink.
//   - Hard links must name an existing non-directory inside root, resolved
//     the same way. A hard link to a symlink links the symlink itself.
//   - Device nodes and FIFOs are never created on the host: they are skipped
//     and listed in Stats.Skipped. The guest mounts a devtmpfs on /dev anyway.
//   - Work is bounded: entries and bytes across all layers (Options), the
//     depth of every directory actually created below root (256, counted on
//     the real tree, so symlinks cannot build deeper trees than names can),
//     and ctx is checked between entries and while copying.
//
// Permission bits are kept, setuid, setgid and sticky included. Ownership and
// the security.capability extended attribute are applied only when running as
// root; otherwise files belong to the caller and directories keep owner rwx so
// that later layers can still be applied. Other extended attributes are
// ignored.
//
// Apply the layers of one root one at a time. When Apply fails, root holds
// part of the layer: the caller removes it.
package flatten

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Defaults of Options.
const (
	DefaultMaxFiles = 1 << 20
	DefaultMaxBytes = 64 << 30
)

// Fixed bounds on names and trees.
const (
	maxNameLen    = 4096 // bytes in an entry name or hard link target
	maxLinkTarget = 4095 // bytes in a symlink target (PATH_MAX with its NUL)
	maxComponent  = 255  // bytes in one component (NAME_MAX)
	maxDepth      = 256  // components in a name, and depth of a directory below root
	maxSymlinks   = 40   // symlinks followed in one resolution (Linux's MAXSYMLINKS)
	maxSkipped    = 100  // entries listed in Stats.Skipped
	maxXattrLen   = 64   // bytes in a security.capability value (v3 is 24)
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	whiteoutMeta   = ".wh..wh." // aufs bookkeeping (.wh..wh.plnk, ...): ignored
)

// Errors that classify a refused entry; test them with errors.Is.
var (
	// ErrRefused: the entry breaks a rule (unsafe name, link out of root,
	// symlink that leads nowhere, ...). The layer is malformed or hostile.
	ErrRefused = errors.New("refused")
	// ErrLimit: a bound of Options, or a fixed bound on depth, was reached.
	ErrLimit = errors.New("limit exceeded")
)

// Options bound the work. The zero value (or nil) uses the defaults.
type Options struct {
	// MaxFiles bounds the tar entries, plus the directories created for
	// missing parents, across all layers applied with the same Stats.
	// Zero means DefaultMaxFiles.
	MaxFiles int64
	// MaxBytes bounds the bytes of file content written across all layers
	// applied with the same Stats; the holes of sparse files are written as
	// zeros and count. Zero means DefaultMaxBytes.
	MaxBytes int64

	// noOpenat2 makes Apply resolve paths in user space, as it does where
	// openat2 is missing; tests use it to cover both ways.
	noOpenat2 bool
}

// Stats counts the work of Apply. Pass the same Stats to every layer of an
// image: the bounds of Options apply to its totals.
type Stats struct {
	Files int64 // entries read and directories created for missing parents
	Bytes int64 // bytes of file content written
	// Skipped lists entries that were not materialised, and why (device
	// nodes, FIFOs, unknown types, capabilities the filesystem refused), at
	// most 100; SkippedOmitted counts the rest.
	Skipped        []string
	SkippedOmitted int64
}

// EntryError is the error for an entry that could not be applied. Err is
// ErrRefused, ErrLimit, or the underlying failure.
type EntryError struct {
	Name string // the name as it is in the layer
	Rule string // what was refused or failed
	Err  error
}

func (e *EntryError) Error() string {
	s := "entry " + quote(e.Name) + ": " + e.Rule
	if e.Err != nil && e.Err != ErrRefused {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *EntryError) Unwrap() error { return e.Err }

func refused(name, format string, args ...any) error {
	return &EntryError{Name: name, Rule: fmt.Sprintf(format, args...), Err: ErrRefused}
}

func failed(name, rule string, err error) error {
	return &EntryError{Name: name, Rule: rule, Err: err}
}

// quote renders a hostile name for an error: escaped and shortened.
func quote(name string) string {
	const max = 200
	if len(name) > max {
		return fmt.Sprintf("%q...(%d bytes)", name[:max], len(name))
	}
	return fmt.Sprintf("%q", name)
}

// Apply extracts one layer, an uncompressed tar stream, onto the directory
// root, applying its OCI whiteouts to what earlier layers left there. Apply
// the layers of an image in order, with the same stats. A nil opts uses the
// defaults; a nil stats bounds this layer alone.
func Apply(ctx context.Context, root string, layer io.Reader, opts *Options, stats *Stats) error {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if stats == nil {
		stats = &Stats{}
	}
	a, err := newApplier(root, o, stats)
	if err != nil {
		return err
	}
	defer a.close()

	tr := tar.NewReader(layer)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if err := a.count(hdr.Name); err != nil {
			return err
		}
		if err := a.entry(ctx, hdr, tr); err != nil {
			return err
		}
	}
	return a.finish()
}

// applier holds the state of one Apply.
type applier struct {
	opts   Options
	stats  *Stats
	root   int // O_RDONLY|O_DIRECTORY descriptor of root
	rootID fileID
	kernel bool // openat2(RESOLVE_IN_ROOT) is available
	owner  bool // running as root: apply ownership and capabilities

	// What this layer touched, for whiteouts and opaque directories, which
	// hide lower layers only. depth holds every directory this layer created,
	// merged or wrote below (and their ancestors), with its depth below root;
	// created holds every name this layer created or replaced.
	depth    map[fileID]int
	created  map[entryID]struct{}
	cleaned  map[fileID]struct{} // directories an opaque marker or whiteout emptied
	dirTimes []dirTime
	buf      []byte
}

// fileID identifies an inode.
type fileID struct{ dev, ino uint64 }

// entryID identifies a name in a directory.
type entryID struct {
	dir  fileID
	name string
}

// dirTime is a directory mtime set when the layer is done, since the
// entries written into it change it.
type dirTime struct {
	name         string // cleaned
	id           fileID
	atime, mtime unix.Timespec
}

func newApplier(root string, o Options, stats *Stats) (*applier, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root: %w", &os.PathError{Op: "open", Path: root, Err: err})
	}
	id, err := statID(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("opening root: %w", err)
	}
	a := &applier{
		opts:    o,
		stats:   stats,
		root:    fd,
		rootID:  id,
		owner:   os.Geteuid() == 0,
		depth:   map[fileID]int{id: 0},
		created: map[entryID]struct{}{},
		cleaned: map[fileID]struct{}{},
	}
	if !o.noOpenat2 {
		p, err := a.openat2(".")
		switch err {
		case nil:
			unix.Close(p)
			a.kernel = true
		case unix.ENOSYS, unix.EPERM: // old kernel, or a seccomp filter
		default:
			unix.Close(fd)
			return nil, fmt.Errorf("opening root: %w", err)
		}
	}
	return a, nil
}

func (a *applier) close() { unix.Close(a.root) }

func (a *applier) count(name string) error {
	a.stats.Files++
	if a.stats.Files > a.opts.MaxFiles {
		return &EntryError{Name: name, Rule: fmt.Sprintf("more than %d files", a.opts.MaxFiles), Err: ErrLimit}
	}
	return nil
}

func (a *applier) skip(name, reason string) {
	if len(a.stats.Skipped) >= maxSkipped {
		a.stats.SkippedOmitted++
		return
	}
	a.stats.Skipped = append(a.stats.Skipped, quote(name)+": "+reason)
}
