// Package initramfs writes the newc cpio archives the guest kernel unpacks
// at boot. The kernel accepts several archives concatenated into one
// initramfs; pyro boots modules.cpio ++ agent.cpio, the kernel modules of an
// environment followed by a root skeleton with the pyro binary as /init.
package initramfs
