package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// maxVmlinuxSize bounds decompression: the bzImage is untrusted input and a
// few bytes of it can claim gigabytes of output. Debian's vmlinux is ~51 MiB.
const maxVmlinuxSize = 256 << 20

// Offsets in the x86 boot protocol header (Documentation/arch/x86/boot.rst).
const (
	hdrSetupSects    = 0x1f1
	hdrMagic         = 0x202
	hdrVersion       = 0x206
	hdrPayloadOffset = 0x248
	hdrPayloadLength = 0x24c
	hdrEnd           = 0x250

	// payload_offset and payload_length appeared in protocol 2.08.
	minBootProtocol = 0x0208
)

// payloadFormats are told apart by magic, as the kernel's own decompressor
// selection does; formats we cannot decompress are named in the error.
var payloadFormats = []struct {
	name  string
	magic string
}{
	{"gzip", "\x1f\x8b"},
	{"lz4", "\x02\x21\x4c\x18"}, // legacy frame
	{"uncompressed", "\x7fELF"},
	{"xz", "\xfd7zXZ\x00"},
	{"zstd", "\x28\xb5\x2f\xfd"},
	{"bzip2", "BZh"},
	{"lzma", "\x5d\x00\x00"},
	{"lzo", "\x89LZO"},
}

// ExtractVmlinux returns the ELF vmlinux compressed inside an x86 bzImage of
// size bytes. QEMU boots that ELF directly through its PVH note, skipping
// the bzImage's real-mode setup and decompressor. LZ4 and gzip payloads are
// supported, as is an uncompressed one. On kernels built with KASLR the
// payload ends with a relocation table after the ELF image; it is returned
// as is, since ELF loaders (QEMU's included) ignore bytes no header covers.
func ExtractVmlinux(bzImage io.ReaderAt, size int64) ([]byte, error) {
	return extractVmlinux(bzImage, size, maxVmlinuxSize)
}

func extractVmlinux(bzImage io.ReaderAt, size, limit int64) ([]byte, error) {
	payload, err := bzImagePayload(bzImage, size)
	if err != nil {
		return nil, err
	}
	format, err := payloadFormat(payload)
	if err != nil {
		return nil, err
	}
	var vmlinux []byte
	switch format {
	case "lz4":
		vmlinux, err = unlz4(payload, limit)
	case "gzip":
		vmlinux, err = gunzip(payload, limit)
	case "uncompressed":
		vmlinux, err = readBounded(payload, limit)
	default:
		return nil, fmt.Errorf("bzImage payload is %s-compressed; only lz4 and gzip are supported", format)
	}
	if err != nil {
		return nil, fmt.Errorf("decompressing %s payload: %w", format, err)
	}
	if err := checkVmlinux(vmlinux); err != nil {
		return nil, err
	}
	return vmlinux, nil
}

// bzImagePayload locates the compressed kernel from the boot protocol header.
func bzImagePayload(r io.ReaderAt, size int64) (*io.SectionReader, error) {
	if size < hdrEnd {
		return nil, fmt.Errorf("bzImage is %d bytes, too short for a boot header", size)
	}
	hdr := make([]byte, hdrEnd)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("reading boot header: %w", err)
	}
	if string(hdr[hdrMagic:hdrMagic+4]) != "HdrS" {
		return nil, errors.New("not a bzImage: no HdrS magic in boot header")
	}
	if v := binary.LittleEndian.Uint16(hdr[hdrVersion:]); v < minBootProtocol {
		return nil, fmt.Errorf("boot protocol %d.%02d has no payload fields, need 2.08 or later", v>>8, v&0xff)
	}
	setupSects := int64(hdr[hdrSetupSects])
	if setupSects == 0 {
		setupSects = 4 // the boot protocol's historical meaning of 0
	}
	// payload_offset counts from the protected-mode code, which follows the
	// boot sector and the setup sectors.
	off := (setupSects+1)*512 + int64(binary.LittleEndian.Uint32(hdr[hdrPayloadOffset:]))
	n := int64(binary.LittleEndian.Uint32(hdr[hdrPayloadLength:]))
	if n == 0 || off > size || n > size-off {
		return nil, fmt.Errorf("payload [%d, +%d) lies outside the %d-byte bzImage", off, n, size)
	}
	return io.NewSectionReader(r, off, n), nil
}

func payloadFormat(payload *io.SectionReader) (string, error) {
	magic := make([]byte, 6)
	n, err := payload.ReadAt(magic, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading payload magic: %w", err)
	}
	for _, f := range payloadFormats {
		if bytes.HasPrefix(magic[:n], []byte(f.magic)) {
			return f.name, nil
		}
	}
	return "", fmt.Errorf("unknown bzImage payload format (magic % x)", magic[:n])
}

// unlz4 decompresses the kernel's LZ4 variant: a legacy frame followed by
// the uncompressed size as 4 little-endian bytes (scripts/Makefile.lib's
// size_append). pierrec/lz4 guesses that a last "block size" equal to the
// output so far is this trailer, and reports a wrong trailer as a truncated
// block; we cut the trailer off instead, so the frame ends at EOF as a
// legacy frame should, and then check it.
func unlz4(payload *io.SectionReader, limit int64) ([]byte, error) {
	n := payload.Size() - 4
	if n < 4 {
		return nil, errors.New("lz4 payload too short")
	}
	tail := make([]byte, 4)
	if _, err := payload.ReadAt(tail, n); err != nil {
		return nil, fmt.Errorf("reading size trailer: %w", err)
	}
	out, err := readBounded(lz4.NewReader(io.NewSectionReader(payload, 0, n)), limit)
	if err != nil {
		return nil, err
	}
	if want := binary.LittleEndian.Uint32(tail); uint64(len(out)) != uint64(want) {
		return nil, fmt.Errorf("decompressed %d bytes, size trailer says %d", len(out), want)
	}
	return out, nil
}

func gunzip(payload io.Reader, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(payload)
	if err != nil {
		return nil, err
	}
	// Only the first member is the kernel; the boot decompressor stops there too.
	zr.Multistream(false)
	return readBounded(zr, limit)
}

// readBounded reads r to EOF, failing rather than holding more than limit
// bytes. It grows its buffer itself so that capacity never exceeds limit+1.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	buf := make([]byte, 0, min(limit+1, 1<<20))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, fmt.Errorf("output exceeds %d bytes", limit)
			}
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			if int64(len(buf)) > limit {
				return nil, fmt.Errorf("output exceeds %d bytes", limit)
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func checkVmlinux(vmlinux []byte) error {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return fmt.Errorf("decompressed payload is not an ELF file: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return fmt.Errorf("vmlinux is %v %v %v, want ELFCLASS64 EM_X86_64 ET_EXEC", f.Class, f.Machine, f.Type)
	}
	return nil
}
