// Package kernel turns a Debian kernel package's files into what pyro boots:
// the uncompressed ELF vmlinux inside the bzImage (booted through its PVH
// entry point), a few values of the build configuration, and the kernel
// modules an environment needs, in the order they must be loaded.
package kernel
