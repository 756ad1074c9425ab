package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/kernel"
)

// ModulesDir is where the modules archive puts the .ko files, and
// LoadOrderPath the file that lists them, one a line, dependencies first:
// each line is a module name followed by the names of the modules it
// depends on, separated by spaces. The guest init loads the modules it is
// asked for, with their dependencies, in this order.
const (
	ModulesDir    = "lib/modules"
	LoadOrderPath = ModulesDir + "/load-order"
)

// WriteModules writes an archive holding each module, without its
// signature (see kernel.StripSignature), as lib/modules/<name>.ko, and the
// load-order file in the order given, which must have dependencies first
// (as kernel.ResolveModules returns them).
func WriteModules(w io.Writer, mods []kernel.Module) error {
	cw := NewWriter(w)
	if err := cw.AddDir("lib", 0o755); err != nil {
		return err
	}
	if err := cw.AddDir(ModulesDir, 0o755); err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range mods {
		if m.Name == "" || strings.ContainsAny(m.Name, "/\n") {
			return fmt.Errorf("invalid module name %q", m.Name)
		}
		ko, err := readModule(m.Path)
		if err != nil {
			return fmt.Errorf("adding module %s: %w", m.Name, err)
		}
		ko = kernel.StripSignature(ko)
		if err := cw.AddFile(ModulesDir+"/"+m.Name+".ko", 0o644, bytes.NewReader(ko), int64(len(ko))); err != nil {
			return fmt.Errorf("adding module %s: %w", m.Name, err)
		}
		order.WriteString(m.Name)
		for _, d := range m.Depends {
			order.WriteString(" " + d)
		}
		order.WriteString("\n")
	}
	if err := cw.AddFile(LoadOrderPath, 0o644, strings.NewReader(order.String()), int64(order.Len())); err != nil {
		return err
	}
	return cw.Close()
}

// WriteAgent writes the root skeleton the guest init starts in, with the
// pyro binary at binaryPath as /init.
func WriteAgent(w io.Writer, binaryPath string) error {
	cw := NewWriter(w)
	for _, dir := range []string{"dev", "proc", "sys", "run", "tmp", "newroot", "lib", ModulesDir} {
		if err := cw.AddDir(dir, 0o755); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's stdio before init runs, so
	// the node must be in the archive rather than made by init.
	if err := cw.AddCharDevice("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := cw.AddCharDevice("dev/null", 0o666, 1, 3); err != nil {
		return err
	}
	if err := addHostFile(cw, "init", 0o755, binaryPath); err != nil {
		return fmt.Errorf("adding init: %w", err)
	}
	return cw.Close()
}

// addHostFile copies the regular file at hostPath into the archive as name.
func addHostFile(cw *Writer, name string, mode os.FileMode, hostPath string) error {
	f, err := os.Open(hostPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", hostPath)
	}
	return cw.AddFile(name, mode, f, fi.Size())
}

// maxModuleSize bounds a module file read into memory.
const maxModuleSize = 64 << 20

func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxModuleSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxModuleSize)
	}
	return io.ReadAll(io.LimitReader(f, maxModuleSize))
}
