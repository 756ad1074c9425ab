package env

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ManifestSchema is the version of the manifest format.
const ManifestSchema = 1

// Blob names content in the cache by digest.
type Blob struct {
	Digest string `json:"digest"` // "sha256:<hex>"
	Size   int64  `json:"size"`
}

// Kernel describes the guest kernel of an environment.
type Kernel struct {
	Blob
	// Release is the kernel release (uname -r).
	Release string `json:"release"`
	// Package is the Debian package and version it came from.
	Package string `json:"package"`
	// HZ is the kernel's timer frequency, for lpj= under TCG.
	HZ int `json:"hz"`
	// PVH says the blob is an ELF with a PVH entry point (booted directly)
	// rather than a bzImage.
	PVH bool `json:"pvh"`
}

// Package is one installed Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Manifest describes one installed environment.
type Manifest struct {
	Schema      int    `json:"schema"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	// Source says where it came from: "local-build", or an OCI reference.
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"created_at"`
	Kernel    Kernel    `json:"kernel"`
	// Modules is a newc cpio archive of the kernel modules the guest needs.
	Modules Blob `json:"modules"`
	// Rootfs is a read-only ext4 image of the root filesystem.
	Rootfs   Blob      `json:"rootfs"`
	Packages []Package `json:"packages"`
	// Image is the runtime configuration of an OCI image environment.
	Image *ImageConfig `json:"image,omitempty"`
}

// ImageConfig is what pyro keeps of an OCI image's config: commands run
// with its environment, and one-shot runs start in its working directory.
// Entrypoint and Cmd are ignored: pyro runs the commands it is given.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Blobs lists every blob the manifest refers to.
func (m *Manifest) Blobs() []Blob {
	return []Blob{m.Kernel.Blob, m.Modules, m.Rootfs}
}

// Size is the total size of the environment's blobs.
func (m *Manifest) Size() int64 {
	var n int64
	for _, b := range m.Blobs() {
		n += b.Size
	}
	return n
}

func (m *Manifest) validate() error {
	if m.Schema != ManifestSchema {
		return fmt.Errorf("manifest schema %d, this pyro reads %d", m.Schema, ManifestSchema)
	}
	if m.Name == "" {
		return fmt.Errorf("manifest without a name")
	}
	for _, b := range m.Blobs() {
		if err := checkDigest(b.Digest); err != nil {
			return err
		}
		if b.Size <= 0 {
			return fmt.Errorf("blob %s has size %d", b.Digest, b.Size)
		}
	}
	return nil
}

func checkDigest(d string) error {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return fmt.Errorf("malformed digest %q", truncate(d, 80))
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("malformed digest %q", truncate(d, 80))
		}
	}
	return nil
}

func parseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("malformed manifest: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
