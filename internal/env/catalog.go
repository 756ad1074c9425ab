// Package env manages environments: the catalog of named environments, the
// local cache of installed ones (content-addressed blobs plus a manifest
// per environment) and building them from Debian packages.
package env

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/errs"
)

// CatalogVersion is the version of the built-in catalog. It changes when an
// entry's contents change, which makes installed copies stale.
const CatalogVersion = "1.0.0"

// Suite is the Debian release the catalog's environments are built from.
const Suite = "bookworm"

// Spec is one catalog entry.
type Spec struct {
	Name        string
	Description string
	// Version of this entry's recipe; an installed environment with another
	// version is stale.
	Version string
	// Packages added to debootstrap's minbase set.
	Packages []string
}

// KernelPackage is the Debian package the guest kernel comes from.
const KernelPackage = "linux-image-cloud-amd64"

// GuestModules are the kernel modules an environment's initramfs carries:
// what every guest loads (guest.BaseModules) and what some need later
// (networking, vsock, entropy). The guest loads only what the host asks
// for, so carrying more costs a little initramfs space, not boot time, and
// a new pyro feature does not need every environment rebuilt.
var GuestModules = []string{
	"virtio_mmio", "virtio_blk", "virtio_console", "overlay",
	"virtio_net", "vmw_vsock_virtio_transport", "virtio_rng",
}

var catalog = []Spec{
	{
		Name:        "debian:12",
		Description: "Debian 12 environment with Git preinstalled for common agent workflows.",
		Version:     "2",
		Packages:    []string{"ca-certificates", "git", "less", "procps"},
	},
	{
		Name:        "debian:12-base",
		Description: "Minimal Debian 12 environment for shell and core Unix tooling.",
		Version:     "2",
		Packages:    []string{"ca-certificates", "procps"},
	},
	{
		Name:        "debian:12-build",
		Description: "Debian 12 environment with Git and common build tools preinstalled.",
		Version:     "2",
		Packages:    []string{"ca-certificates", "git", "less", "procps", "build-essential", "make", "gcc", "g++", "pkg-config", "python3", "curl", "xz-utils", "patch"},
	},
}

// DefaultName is the environment used when none is named.
const DefaultName = "debian:12"

// Catalog returns the catalog's entries in a stable order.
func Catalog() []Spec {
	return append([]Spec(nil), catalog...)
}

// Lookup returns the catalog entry called name.
func Lookup(name string) (Spec, error) {
	for _, s := range catalog {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, 0, len(catalog))
	for _, s := range catalog {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return Spec{}, errs.New(errs.NotFound, "see 'pyro env list'",
		"unknown environment %q (the catalog has %s)", truncate(name, 80), strings.Join(names, ", "))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ValidateName rejects names that cannot be environments before any file
// is touched.
func ValidateName(name string) error {
	if name == "" {
		return errs.New(errs.Invalid, "name an environment, for example debian:12", "empty environment name")
	}
	if len(name) > 255 || strings.ContainsAny(name, " \t\n\x00") || name == "." || name == ".." {
		return errs.New(errs.Invalid, "see 'pyro env list'", "malformed environment name %q", truncate(name, 80))
	}
	return nil
}

func (s Spec) String() string { return fmt.Sprintf("%s (recipe %s)", s.Name, s.Version) }
