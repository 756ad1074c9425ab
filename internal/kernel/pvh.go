package kernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical
// entry point that PVH loaders such as QEMU's -kernel jump to.
const xenElfnotePhys32Entry = 18

// HasPVHNote reports whether vmlinux is an ELF file carrying a Xen
// PHYS32_ENTRY note, i.e. whether QEMU can boot it directly with -kernel.
func HasPVHNote(vmlinux []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE && hasPVHEntry(f.ByteOrder, fileRange(vmlinux, p.Off, p.Filesz), p.Align) {
			return true
		}
	}
	// Section headers are the fallback for files whose notes are not in a
	// PT_NOTE segment.
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE && hasPVHEntry(f.ByteOrder, fileRange(vmlinux, s.Offset, s.FileSize), s.Addralign) {
			return true
		}
	}
	return false
}

// fileRange returns b[off:off+n], or nil when that lies outside b.
func fileRange(b []byte, off, n uint64) []byte {
	if off > uint64(len(b)) || n > uint64(len(b))-off {
		return nil
	}
	return b[off : off+n]
}

// hasPVHEntry walks the notes in b: namesz, descsz and type words, then the
// name and the descriptor, each padded to the note alignment (4, or 8 in
// some ELF64 files).
func hasPVHEntry(order binary.ByteOrder, b []byte, align uint64) bool {
	if align != 8 {
		align = 4
	}
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	for uint64(len(b)) >= 12 {
		namesz := uint64(order.Uint32(b[0:]))
		descsz := uint64(order.Uint32(b[4:]))
		typ := order.Uint32(b[8:])
		b = b[12:]
		if pad(namesz) > uint64(len(b)) {
			return false
		}
		name := bytes.TrimRight(b[:namesz], "\x00")
		b = b[pad(namesz):]
		if descsz > uint64(len(b)) {
			return false
		}
		if typ == xenElfnotePhys32Entry && string(name) == "Xen" && descsz >= 4 {
			return true
		}
		b = b[min(pad(descsz), uint64(len(b))):]
	}
	return false
}
