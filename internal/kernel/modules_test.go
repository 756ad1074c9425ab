package kernel

import (
	"debug/elf"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeModule writes a fake .ko: a relocatable ELF whose .modinfo holds the
// given NUL-separated fields.
func writeModule(t *testing.T, dir, rel string, modinfo ...string) string {
	t.Helper()
	var info []byte
	for _, f := range modinfo {
		info = append(append(info, f...), 0)
	}
	ko := testELF{typ: elf.ET_REL, machine: elf.EM_X86_64, sections: []testSection{
		{".text", elf.SHT_PROGBITS, []byte{0xc3}},
		{".modinfo", elf.SHT_PROGBITS, info},
	}}.bytes(t)
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, ko, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// virtioTree lays out the modules pyro needs the way Debian's package does.
func virtioTree(t *testing.T) string {
	dir := t.TempDir()
	for _, m := range []struct{ path, name, depends string }{
		{"kernel/drivers/virtio/virtio_ring.ko", "virtio_ring", ""},
		{"kernel/drivers/virtio/virtio.ko", "virtio", "virtio_ring"},
		{"kernel/drivers/virtio/virtio_mmio.ko", "virtio_mmio", "virtio,virtio_ring"},
		{"kernel/drivers/block/virtio_blk.ko", "virtio_blk", "virtio,virtio_ring"},
		{"kernel/drivers/net/virtio_net.ko", "virtio_net", "virtio_ring,virtio,net_failover"},
		{"kernel/drivers/net/net_failover.ko", "net_failover", "failover"},
		{"kernel/net/core/failover.ko", "failover", ""},
		{"kernel/drivers/char/hw_random/virtio-rng.ko", "virtio_rng", "virtio,virtio_ring"},
		{"kernel/fs/overlayfs/overlay.ko", "overlay", ""},
	} {
		writeModule(t, dir, m.path, "license=GPL", "depends="+m.depends, "retpoline=Y", "name="+m.name, "vermagic=6.1.0 SMP mod_unload")
	}
	return dir
}

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestResolveModules(t *testing.T) {
	dir := virtioTree(t)
	tests := []struct {
		name string
		want []string
		got  []string
	}{
		{"leaf pulls in its dependencies", []string{"virtio_mmio"}, []string{"virtio_ring", "virtio", "virtio_mmio"}},
		{"each module once", []string{"virtio_blk", "virtio_mmio", "virtio_ring"}, []string{"virtio_ring", "virtio", "virtio_blk", "virtio_mmio"}},
		{"transitive", []string{"virtio_net"}, []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}},
		{"file name with a dash", []string{"virtio_rng"}, []string{"virtio_ring", "virtio", "virtio_rng"}},
		{"asked for with a dash", []string{"virtio-rng"}, []string{"virtio_ring", "virtio", "virtio_rng"}},
		{"no dependencies", []string{"overlay"}, []string{"overlay"}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods, err := ResolveModules(dir, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(mods); !reflect.DeepEqual(got, tt.got) {
				t.Errorf("order = %v, want %v", got, tt.got)
			}
		})
	}

	mods, err := ResolveModules(dir, []string{"virtio_rng"})
	if err != nil {
		t.Fatal(err)
	}
	rng := mods[len(mods)-1]
	if want := filepath.Join(dir, "kernel/drivers/char/hw_random/virtio-rng.ko"); rng.Path != want {
		t.Errorf("path = %s, want %s", rng.Path, want)
	}
	if want := []string{"virtio", "virtio_ring"}; !reflect.DeepEqual(rng.Depends, want) {
		t.Errorf("depends = %v, want %v", rng.Depends, want)
	}
}

func TestResolveModulesBuiltin(t *testing.T) {
	dir := virtioTree(t)
	// A kernel with virtio built in lists it in modules.builtin and a
	// module's depends= leaves it out.
	writeModule(t, dir, "kernel/drivers/virtio/virtio_pci.ko", "depends=", "name=virtio_pci")
	builtin := "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio-balloon.ko\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtin), 0o644); err != nil {
		t.Fatal(err)
	}
	mods, err := ResolveModules(dir, []string{"virtio_ring", "virtio_balloon", "virtio_pci"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(mods), []string{"virtio_pci"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestResolveModulesErrors(t *testing.T) {
	tests := []struct {
		name    string
		modules map[string][]string // file -> modinfo fields
		want    []string
		wantErr string
	}{
		{
			name:    "unknown module",
			modules: map[string][]string{"a.ko": {"name=a"}},
			want:    []string{"a", "nosuch"},
			wantErr: "module nosuch not found",
		},
		{
			name:    "missing dependency",
			modules: map[string][]string{"a.ko": {"depends=gone", "name=a"}},
			want:    []string{"a"},
			wantErr: "module gone (needed by a) not found",
		},
		{
			name: "cycle",
			modules: map[string][]string{
				"a.ko": {"depends=b", "name=a"},
				"b.ko": {"depends=c", "name=b"},
				"c.ko": {"depends=a", "name=c"},
			},
			want:    []string{"a"},
			wantErr: "module dependency cycle: a -> b -> c -> a",
		},
		{
			name:    "self dependency",
			modules: map[string][]string{"a.ko": {"depends=a", "name=a"}},
			want:    []string{"a"},
			wantErr: "cycle: a -> a",
		},
		{
			name:    "modinfo disagrees with file name",
			modules: map[string][]string{"a.ko": {"name=b"}},
			want:    []string{"a"},
			wantErr: "modinfo names it b, not a",
		},
		{
			name:    "same module twice",
			modules: map[string][]string{"x/a.ko": {"name=a"}, "y/a.ko": {"name=a"}},
			want:    []string{"a"},
			wantErr: "module a is ambiguous",
		},
		{
			name:    "path in depends",
			modules: map[string][]string{"a.ko": {"depends=../../etc", "name=a"}},
			want:    []string{"a"},
			wantErr: `invalid module name "../../etc"`,
		},
		{
			name:    "path asked for",
			modules: map[string][]string{"a.ko": {"name=a"}},
			want:    []string{"../a"},
			wantErr: `invalid module name "../a"`,
		},
		{
			name:    "empty name asked for",
			modules: map[string][]string{"a.ko": {"name=a"}},
			want:    []string{""},
			wantErr: `invalid module name ""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for file, info := range tt.modules {
				writeModule(t, dir, file, info...)
			}
			_, err := ResolveModules(dir, tt.want)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveModulesBadFiles(t *testing.T) {
	tests := []struct {
		name    string
		write   func(t *testing.T, path string)
		wantErr string
	}{
		{"not an ELF", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "reading module"},
		{"no modinfo", func(t *testing.T, path string) {
			ko := testELF{typ: elf.ET_REL, machine: elf.EM_X86_64}.bytes(t)
			if err := os.WriteFile(path, ko, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "no .modinfo section"},
		{"too large", func(t *testing.T, path string) {
			// Sparse, so the test writes next to nothing.
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, maxModuleSize+1); err != nil {
				t.Fatal(err)
			}
		}, "over the 67108864-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.write(t, filepath.Join(dir, "a.ko"))
			_, err := ResolveModules(dir, []string{"a"})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveModulesMissingDir(t *testing.T) {
	_, err := ResolveModules(filepath.Join(t.TempDir(), "nope"), []string{"a"})
	if err == nil || !strings.Contains(err.Error(), "indexing modules") {
		t.Fatalf("err = %v, want an indexing error", err)
	}
}
