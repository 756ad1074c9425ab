package kernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"
)

// testELF describes a minimal little-endian ELF64 file for tests: an
// optional PT_NOTE segment and any number of sections.
type testELF struct {
	typ      elf.Type
	machine  elf.Machine
	note     []byte // contents of a PT_NOTE segment, if any
	sections []testSection
	pad      int // zero bytes appended, to make large files
}

type testSection struct {
	name string
	typ  elf.SectionType
	data []byte
}

// bytes lays the file out as header, program header, note, section data,
// section names, section headers and padding.
func (e testELF) bytes(t testing.TB) []byte {
	t.Helper()
	const ehsize, phsize, shsize = 64, 56, 64
	var phdrs []elf.Prog64
	var body bytes.Buffer
	dataStart := uint64(ehsize)
	if e.note != nil {
		dataStart += phsize
		phdrs = append(phdrs, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: dataStart, Filesz: uint64(len(e.note)), Memsz: uint64(len(e.note)), Align: 4})
		body.Write(e.note)
	}

	shstrtab := []byte{0}
	shdrs := []elf.Section64{{}}
	for _, s := range append(e.sections, testSection{".shstrtab", elf.SHT_STRTAB, nil}) {
		nameOff := uint32(len(shstrtab))
		shstrtab = append(append(shstrtab, s.name...), 0)
		if s.typ == elf.SHT_STRTAB {
			s.data = shstrtab
		}
		shdrs = append(shdrs, elf.Section64{Name: nameOff, Type: uint32(s.typ), Off: dataStart + uint64(body.Len()), Size: uint64(len(s.data)), Addralign: 1})
		body.Write(s.data)
	}
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}

	hdr := elf.Header64{
		Type:      uint16(e.typ),
		Machine:   uint16(e.machine),
		Version:   uint32(elf.EV_CURRENT),
		Ehsize:    ehsize,
		Phentsize: phsize,
		Phnum:     uint16(len(phdrs)),
		Shoff:     dataStart + uint64(body.Len()),
		Shentsize: shsize,
		Shnum:     uint16(len(shdrs)),
		Shstrndx:  uint16(len(shdrs) - 1),
	}
	if len(phdrs) > 0 {
		hdr.Phoff = ehsize
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)

	var out bytes.Buffer
	mustWrite(t, &out, hdr)
	mustWrite(t, &out, phdrs)
	out.Write(body.Bytes())
	mustWrite(t, &out, shdrs)
	out.Write(make([]byte, e.pad))
	return out.Bytes()
}

func mustWrite(t testing.TB, buf *bytes.Buffer, v any) {
	t.Helper()
	if err := binary.Write(buf, binary.LittleEndian, v); err != nil {
		t.Fatal(err)
	}
}

// note encodes one ELF note with 4-byte padding.
func note(name string, typ uint32, desc []byte) []byte {
	pad := func(b []byte) []byte {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, pad(append([]byte(name), 0))...)
	return append(b, pad(desc)...)
}

// pvhNote is the note Linux's arch/x86/platform/pvh emits.
func pvhNote() []byte {
	return note("Xen", xenElfnotePhys32Entry, binary.LittleEndian.AppendUint32(nil, 0x1000000))
}

func vmlinuxELF(t testing.TB) []byte {
	return testELF{typ: elf.ET_EXEC, machine: elf.EM_X86_64, note: pvhNote()}.bytes(t)
}
