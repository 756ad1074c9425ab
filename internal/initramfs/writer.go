package initramfs

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Mode bits of the cpio header, which are the Linux st_mode bits.
const (
	modeDir     = 0o040000
	modeChar    = 0o020000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

const (
	// maxName is PATH_MAX less the terminating NUL the header counts.
	maxName = 4095
	// maxFileSize is the largest size the 8-hex-digit field holds.
	maxFileSize = 1<<32 - 1
	trailer     = "TRAILER!!!"
)

// ErrClosed is returned when adding to a Writer after Close.
var ErrClosed = errors.New("initramfs: writer closed")

// Writer writes a newc ("070701") cpio archive in the form the kernel's
// initramfs unpacker reads. Output depends only on what is added: every
// entry has mtime 0 and uid and gid 0.
//
// We write the format by hand rather than with cavaliergopher/cpio's Writer
// because that one never fills in the rdevmajor/rdevminor fields, so device
// nodes would all be 0:0, and numbers inodes 1, 2, ... in every archive.
type Writer struct {
	w       io.Writer
	entries map[string]bool // name -> is a directory
	inodes  map[uint32]bool
	err     error // sticky: after a failed write the archive is unusable
	closed  bool
}

// NewWriter returns a Writer writing an archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, entries: make(map[string]bool), inodes: make(map[uint32]bool)}
}

// AddDir adds a directory. Parent directories of any entry that were not
// added before it are added implicitly with mode 0755, since the kernel
// creates entries in archive order and cannot create a child before its
// parent.
func (w *Writer) AddDir(name string, mode fs.FileMode) error {
	return w.add(name, modeDir, mode, 0, 0, nil, 0)
}

// AddFile adds a regular file whose contents are the next size bytes of data.
func (w *Writer) AddFile(name string, mode fs.FileMode, data io.Reader, size int64) error {
	if size < 0 || size > maxFileSize || data == nil && size > 0 {
		return fmt.Errorf("adding %s: no data or size %d out of range for cpio", name, size)
	}
	return w.add(name, modeRegular, mode, 0, 0, data, size)
}

// AddCharDevice adds a character device node. It is only an archive entry:
// the guest kernel creates the node while unpacking, nothing is created on
// the host.
func (w *Writer) AddCharDevice(name string, mode fs.FileMode, major, minor uint32) error {
	return w.add(name, modeChar, mode, major, minor, nil, 0)
}

// AddSymlink adds a symbolic link to target, which the guest resolves.
func (w *Writer) AddSymlink(name, target string) error {
	if target == "" || len(target) > maxName || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("adding %s: invalid symlink target %q", name, target)
	}
	return w.add(name, modeSymlink, 0o777, 0, 0, strings.NewReader(target), int64(len(target)))
}

// Close writes the trailer that ends the archive. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.err != nil || w.closed {
		return w.err
	}
	w.closed = true
	// Inode 0 and nlink 1, as GNU cpio writes it.
	w.err = w.writeHeader(trailer, 0, 0, 1, 0, 0, 0)
	return w.err
}

func (w *Writer) add(name string, typ uint32, mode fs.FileMode, major, minor uint32, data io.Reader, size int64) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	if err := checkName(name); err != nil {
		return err
	}
	perm, err := permBits(mode)
	if err != nil {
		return fmt.Errorf("adding %s: %w", name, err)
	}
	if _, ok := w.entries[name]; ok {
		return fmt.Errorf("adding %s: already in the archive", name)
	}
	if err := w.addParents(name); err != nil {
		return err
	}

	// Directories conventionally count "." and their entry in the parent.
	// Everything else has one link: the kernel treats entries with nlink > 1
	// as hard links to an earlier inode, which could reach across archives.
	nlink := uint32(1)
	if typ == modeDir {
		nlink = 2
	}
	w.entries[name] = typ == modeDir
	err = w.writeHeader(name, w.inode(name), typ|perm, nlink, size, major, minor)
	if err == nil && size > 0 {
		err = w.writeData(data, size)
	}
	if err != nil {
		w.err = fmt.Errorf("adding %s: %w", name, err)
	}
	return w.err
}

// addParents adds the missing directories above name, outermost first.
func (w *Writer) addParents(name string) error {
	var missing []string
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		isDir, ok := w.entries[dir]
		if ok && !isDir {
			return fmt.Errorf("adding %s: %s is not a directory", name, dir)
		}
		if ok {
			break
		}
		missing = append(missing, dir)
	}
	for _, dir := range slices.Backward(missing) {
		if err := w.AddDir(dir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// inode numbers an entry by a hash of its name, so that two archives
// concatenated into one initramfs give different paths different numbers
// and shared directories such as lib the same one. Nothing relies on this
// for correctness: the kernel only looks inodes up for nlink > 1, which we
// never write, and forgets them at each trailer.
func (w *Writer) inode(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	ino := h.Sum32()
	for ino == 0 || w.inodes[ino] {
		ino++
	}
	w.inodes[ino] = true
	return ino
}

// writeHeader writes a newc header and the name, padded to 4 bytes.
func (w *Writer) writeHeader(name string, ino, mode, nlink uint32, size int64, major, minor uint32) error {
	buf := make([]byte, 0, 110+len(name)+4)
	buf = append(buf, "070701"...)
	for _, field := range []uint32{
		ino, mode, 0, 0, nlink, 0, uint32(size), // ino mode uid gid nlink mtime filesize
		0, 0, major, minor, // devmajor devminor rdevmajor rdevminor
		uint32(len(name) + 1), 0, // namesize check
	} {
		buf = fmt.Appendf(buf, "%08x", field)
	}
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	_, err := w.w.Write(buf)
	return err
}

func (w *Writer) writeData(data io.Reader, size int64) error {
	n, err := io.CopyN(w.w, data, size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("data ended after %d of %d bytes", n, size)
	}
	if err != nil {
		return err
	}
	_, err = w.w.Write(make([]byte, pad4(int(size%4))))
	return err
}

func pad4(n int) int { return (4 - n%4) % 4 }

// checkName accepts relative, clean, slash-separated paths: the kernel
// unpacks names relative to the root, and '..' would climb out of the
// directory an archive is meant to fill.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name in cpio archive")
	case slices.Contains(strings.Split(name, "/"), ".."):
		return fmt.Errorf("name %q in cpio archive has a '..' component", name)
	case !fs.ValidPath(name) || name == "." || name == trailer || len(name) > maxName || strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("name %q in cpio archive is not a clean relative path", name)
	}
	return nil
}

// permBits converts the permission, setuid, setgid and sticky bits of mode;
// the entry's type comes from the Add method, not from mode.
func permBits(mode fs.FileMode) (uint32, error) {
	if mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return 0, fmt.Errorf("mode %v has more than permission bits", mode)
	}
	bits := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits, nil
}
