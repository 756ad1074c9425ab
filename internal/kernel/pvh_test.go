package kernel

import (
	"debug/elf"
	"encoding/binary"
	"testing"
)

func TestHasPVHNote(t *testing.T) {
	entry := binary.LittleEndian.AppendUint32(nil, 0x1000000)
	exec := func(note []byte, sections ...testSection) []byte {
		return testELF{typ: elf.ET_EXEC, machine: elf.EM_X86_64, note: note, sections: sections}.bytes(t)
	}
	others := append(note("Xen", 6, []byte("linux\x00")), note("Linux", 1, []byte("6.1"))...)
	tests := []struct {
		name string
		file []byte
		want bool
	}{
		{"pvh note", exec(pvhNote()), true},
		{"after other notes", exec(append(others, pvhNote()...)), true},
		{"only in a note section", exec(nil, testSection{".note.Xen", elf.SHT_NOTE, pvhNote()}), true},
		{"other Xen notes only", exec(others), false},
		{"type 18 from another vendor", exec(note("Linux", xenElfnotePhys32Entry, entry)), false},
		{"name Xenon", exec(note("Xenon", xenElfnotePhys32Entry, entry)), false},
		{"empty descriptor", exec(note("Xen", xenElfnotePhys32Entry, nil)), false},
		{"truncated note", exec(pvhNote()[:18]), false},
		{"huge namesz", exec(append(binary.LittleEndian.AppendUint32(nil, 0xffffffff), make([]byte, 16)...)), false},
		{"no notes", exec(nil), false},
		{"not an ELF", []byte("MZ not an elf"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HasPVHNote(tt.file); got != tt.want {
				t.Errorf("HasPVHNote = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzHasPVHNote(f *testing.F) {
	f.Add(vmlinuxELF(f))
	f.Add(testELF{typ: elf.ET_EXEC, machine: elf.EM_X86_64, sections: []testSection{{".note.Xen", elf.SHT_NOTE, pvhNote()}}}.bytes(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		HasPVHNote(b)
	})
}
