package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// bzImage wraps payload in an x86 boot header with setupSects setup
// sectors. The payload sits a little way into the protected-mode code, so a
// test catches payload_offset being taken from the start of the file.
func bzImage(setupSects byte, version uint16, payload []byte) []byte {
	sects := int(setupSects)
	if sects == 0 {
		sects = 4
	}
	const payloadOffset = 0x40
	img := make([]byte, (sects+1)*512+payloadOffset)
	img[hdrSetupSects] = setupSects
	copy(img[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[hdrVersion:], version)
	binary.LittleEndian.PutUint32(img[hdrPayloadOffset:], payloadOffset)
	binary.LittleEndian.PutUint32(img[hdrPayloadLength:], uint32(len(payload)))
	return append(img, payload...)
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// kernelLZ4 compresses b as the kernel build does (lz4 -l, then
// size_append): a legacy frame and the uncompressed size.
func kernelLZ4(t testing.TB, b []byte, size uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := lz4.NewWriter(&buf)
	if err := zw.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.AppendUint32(buf.Bytes(), size)
}

func trimTail(b []byte) []byte { return b[:len(b)-4] }

func TestExtractVmlinux(t *testing.T) {
	vmlinux := vmlinuxELF(t)
	// Over 8 MiB, so the LZ4 legacy frame has more than one block.
	big := testELF{typ: elf.ET_EXEC, machine: elf.EM_X86_64, note: pvhNote(), pad: 9 << 20}.bytes(t)
	arm := testELF{typ: elf.ET_EXEC, machine: elf.EM_AARCH64}.bytes(t)
	module := testELF{typ: elf.ET_REL, machine: elf.EM_X86_64}.bytes(t)

	tests := []struct {
		name    string
		image   []byte
		want    []byte
		wantErr string
	}{
		{"gzip", bzImage(27, 0x020f, gzipped(t, vmlinux)), vmlinux, ""},
		{"lz4", bzImage(39, 0x020f, kernelLZ4(t, vmlinux, uint32(len(vmlinux)))), vmlinux, ""},
		{"lz4 multi-block", bzImage(39, 0x020f, kernelLZ4(t, big, uint32(len(big)))), big, ""},
		{"uncompressed", bzImage(1, 0x0208, vmlinux), vmlinux, ""},
		{"setup_sects 0 means 4", bzImage(0, 0x020f, gzipped(t, vmlinux)), vmlinux, ""},
		{"lz4 size trailer disagrees", bzImage(39, 0x020f, kernelLZ4(t, vmlinux, 12345)), nil, "size trailer says 12345"},
		{"lz4 without trailer", bzImage(39, 0x020f, trimTail(kernelLZ4(t, vmlinux, 0))), nil, "decompressing lz4 payload"},
		{"empty payload", bzImage(39, 0x020f, nil), nil, "outside"},
		{"xz", bzImage(39, 0x020f, []byte("\xfd7zXZ\x00rest")), nil, "xz-compressed"},
		{"zstd", bzImage(39, 0x020f, []byte("\x28\xb5\x2f\xfdrest")), nil, "zstd-compressed"},
		{"bzip2", bzImage(39, 0x020f, []byte("BZh91AY")), nil, "bzip2-compressed"},
		{"lzma", bzImage(39, 0x020f, []byte("\x5d\x00\x00\x80\x00")), nil, "lzma-compressed"},
		{"lzo", bzImage(39, 0x020f, []byte("\x89LZO\x00")), nil, "lzo-compressed"},
		{"unknown payload", bzImage(39, 0x020f, []byte("hello")), nil, "unknown bzImage payload format"},
		{"not an ELF", bzImage(39, 0x020f, gzipped(t, []byte("not an elf"))), nil, "not an ELF"},
		{"arm64 ELF", bzImage(39, 0x020f, gzipped(t, arm)), nil, "EM_AARCH64"},
		{"relocatable ELF", bzImage(39, 0x020f, gzipped(t, module)), nil, "ET_REL"},
		{"corrupt gzip", bzImage(39, 0x020f, gzipped(t, vmlinux)[:40]), nil, "decompressing gzip payload"},
		{"old boot protocol", bzImage(39, 0x0206, gzipped(t, vmlinux)), nil, "boot protocol 2.06"},
		{"no HdrS", make([]byte, 4096), nil, "no HdrS magic"},
		{"short file", []byte("MZ"), nil, "too short"},
		{"payload past end", bzImage(39, 0x020f, gzipped(t, vmlinux))[:8000], nil, "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExtractVmlinux(bytes.NewReader(tt.image), int64(len(tt.image)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes, want the %d-byte ELF", len(got), len(tt.want))
			}
		})
	}
}

func TestExtractVmlinuxBound(t *testing.T) {
	vmlinux := testELF{typ: elf.ET_EXEC, machine: elf.EM_X86_64, pad: 2 << 20}.bytes(t)
	for name, payload := range map[string][]byte{
		"gzip": gzipped(t, vmlinux),
		"lz4":  kernelLZ4(t, vmlinux, uint32(len(vmlinux))),
	} {
		t.Run(name, func(t *testing.T) {
			img := bzImage(39, 0x020f, payload)
			_, err := extractVmlinux(bytes.NewReader(img), int64(len(img)), 1<<20)
			if err == nil || !strings.Contains(err.Error(), "exceeds 1048576 bytes") {
				t.Fatalf("err = %v, want the output bound to be enforced", err)
			}
			// Exactly at the limit is fine.
			if _, err := extractVmlinux(bytes.NewReader(img), int64(len(img)), int64(len(vmlinux))); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
		})
	}
}

func FuzzExtractVmlinux(f *testing.F) {
	vmlinux := vmlinuxELF(f)
	// One setup sector keeps the seeds small, so mutations reach the payload.
	f.Add(bzImage(1, 0x020f, kernelLZ4(f, vmlinux, uint32(len(vmlinux)))))
	f.Add(bzImage(1, 0x020f, gzipped(f, vmlinux)))
	f.Add(bzImage(1, 0x020f, vmlinux))
	f.Add(bzImage(1, 0x0208, []byte("\xfd7zXZ\x00")))
	f.Fuzz(func(t *testing.T, image []byte) {
		// A small bound, so that inputs which decompress a lot exercise it
		// without slowing the fuzzer down; the code path is the same.
		const limit = 1 << 20
		got, err := extractVmlinux(bytes.NewReader(image), int64(len(image)), limit)
		if err != nil {
			return
		}
		if len(got) > limit {
			t.Fatalf("returned %d bytes, over the %d-byte bound", len(got), limit)
		}
		HasPVHNote(got)
	})
}
