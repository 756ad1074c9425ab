package env

import (
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

func TestLookup(t *testing.T) {
	for _, s := range Catalog() {
		got, err := Lookup(s.Name)
		if err != nil {
			t.Errorf("Lookup(%q): %v", s.Name, err)
			continue
		}
		if got.Name != s.Name || got.Version == "" || len(got.Packages) == 0 {
			t.Errorf("Lookup(%q) = %+v", s.Name, got)
		}
	}
	if _, err := Lookup(DefaultName); err != nil {
		t.Errorf("the default environment %s is not in the catalog: %v", DefaultName, err)
	}
	for _, name := range []string{"", "debian:11", "DEBIAN:12", "debian:12 ", "ubuntu", strings.Repeat("x", 1000)} {
		_, err := Lookup(name)
		if err == nil {
			t.Errorf("Lookup(%q) succeeded", name)
			continue
		}
		if k := errs.KindOf(err); k != errs.NotFound {
			t.Errorf("Lookup(%q): kind %s, want %s", name, k, errs.NotFound)
		}
		if errs.HintOf(err) == "" {
			t.Errorf("Lookup(%q): no hint", name)
		}
		// The message names what the catalog has, and never echoes a huge name back.
		if !strings.Contains(err.Error(), DefaultName) {
			t.Errorf("Lookup(%q) = %q, which does not list the catalog", name, err)
		}
		if len(err.Error()) > 300 {
			t.Errorf("Lookup of a %d-byte name: %d-byte message", len(name), len(err.Error()))
		}
	}
}

func TestCatalogIsACopy(t *testing.T) {
	c := Catalog()
	c[0].Name = "changed"
	if Catalog()[0].Name == "changed" {
		t.Error("changing Catalog's result changed the catalog")
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"debian:12", true},
		{"debian:12-build", true},
		{"a", true},
		{strings.Repeat("x", 255), true},
		{"", false},
		{strings.Repeat("x", 256), false},
		{"debian 12", false},
		{"debian:12\n", false},
		{"tab\there", false},
		{"nul\x00", false},
	} {
		err := ValidateName(tc.name)
		if tc.ok {
			if err != nil {
				t.Errorf("ValidateName(%q): %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", tc.name)
			continue
		}
		if k := errs.KindOf(err); k != errs.Invalid {
			t.Errorf("ValidateName(%q): kind %s, want %s", tc.name, k, errs.Invalid)
		}
		if len(err.Error()) > 200 {
			t.Errorf("ValidateName of a %d-byte name: %d-byte message", len(tc.name), len(err.Error()))
		}
	}
}

func TestCanonicalName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		image    bool
		kind     errs.Kind // "" when it is valid
	}{
		{"debian:12", "debian:12", false, ""},
		{"docker.io/library/alpine:3.20", "index.docker.io/library/alpine:3.20", true, ""},
		{"127.0.0.1:5000/team/env", "127.0.0.1:5000/team/env:latest", true, ""},
		{"", "", false, errs.Invalid},
		{"127.0.0.1:5000/Bad Name", "", true, errs.Invalid},
	} {
		got, image, err := CanonicalName(tc.in)
		if tc.kind != "" {
			if errs.KindOf(err) != tc.kind {
				t.Errorf("CanonicalName(%q) error %v (kind %s), want kind %s", tc.in, err, errs.KindOf(err), tc.kind)
			}
			continue
		}
		if err != nil || got != tc.want || image != tc.image {
			t.Errorf("CanonicalName(%q) = %q, %v, %v; want %q, %v", tc.in, got, image, err, tc.want, tc.image)
		}
	}
}
