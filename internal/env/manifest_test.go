package env

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func digestOf(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

func validManifest() *Manifest {
	return &Manifest{
		Schema:    ManifestSchema,
		Name:      "debian:12",
		Version:   "1",
		Source:    "local-build",
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Kernel:    Kernel{Blob: Blob{Digest: digestOf('a'), Size: 10}, Release: "6.1.0-28-cloud-amd64", HZ: 250, PVH: true},
		Modules:   Blob{Digest: digestOf('b'), Size: 20},
		Rootfs:    Blob{Digest: digestOf('c'), Size: 30},
		Packages:  []Package{{Name: "git", Version: "1:2.39.5-0+deb12u1"}},
	}
}

func TestManifestValidate(t *testing.T) {
	if err := validManifest().validate(); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Manifest)
	}{
		{"schema 0", func(m *Manifest) { m.Schema = 0 }},
		{"future schema", func(m *Manifest) { m.Schema = ManifestSchema + 1 }},
		{"no name", func(m *Manifest) { m.Name = "" }},
		{"digest without algorithm", func(m *Manifest) { m.Kernel.Digest = strings.Repeat("a", 64) }},
		{"other algorithm", func(m *Manifest) { m.Kernel.Digest = "sha512:" + strings.Repeat("a", 64) }},
		{"short digest", func(m *Manifest) { m.Modules.Digest = "sha256:abc" }},
		{"long digest", func(m *Manifest) { m.Modules.Digest = digestOf('a') + "0" }},
		{"upper-case digest", func(m *Manifest) { m.Rootfs.Digest = "sha256:" + strings.Repeat("A", 64) }},
		{"non-hex digest", func(m *Manifest) { m.Rootfs.Digest = "sha256:" + strings.Repeat("g", 64) }},
		{"path in digest", func(m *Manifest) { m.Rootfs.Digest = "sha256:../../../../etc/passwd" + strings.Repeat("a", 36) }},
		{"empty digest", func(m *Manifest) { m.Modules.Digest = "" }},
		{"zero size", func(m *Manifest) { m.Rootfs.Size = 0 }},
		{"negative size", func(m *Manifest) { m.Kernel.Size = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			tc.mutate(m)
			if err := m.validate(); err == nil {
				t.Error("validate = nil, want an error")
			}
			data, _ := json.Marshal(m)
			if _, err := parseManifest(data); err == nil {
				t.Error("parseManifest = nil error")
			}
		})
	}
}

func TestMalformedDigestMessageIsBounded(t *testing.T) {
	m := validManifest()
	m.Kernel.Digest = "sha256:" + strings.Repeat("z", 10000)
	err := m.validate()
	if err == nil {
		t.Fatal("validate = nil")
	}
	if len(err.Error()) > 200 {
		t.Errorf("%d-byte message for a malformed digest", len(err.Error()))
	}
}

func TestParseManifest(t *testing.T) {
	want := validManifest()
	data, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(got)
	orig, _ := json.Marshal(want)
	if string(again) != string(orig) {
		t.Errorf("round trip:\n got %s\nwant %s", again, orig)
	}
	if got.Size() != 60 {
		t.Errorf("Size = %d, want 60", got.Size())
	}
	for _, bad := range []string{"", "{", "[]", "null", `{"schema":"1"}`, `{"schema":2,"name":"x"}`} {
		if _, err := parseManifest([]byte(bad)); err == nil {
			t.Errorf("parseManifest(%q) = nil error", bad)
		}
	}
}
