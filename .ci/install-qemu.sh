#!/bin/sh
# install-qemu.sh: install what the live QEMU tests (capture/qemu_test.go and
# the fidelity suite, via the repository's tools/qemu-arm64-guest.sh) need on a
# Debian 12 or newer machine. Run as root. Idempotent: when everything is
# already there it changes nothing and makes no network access.
set -eu
export DEBIAN_FRONTEND=noninteractive
PATH=$PATH:/usr/sbin:/sbin

have() { command -v "$1" >/dev/null 2>&1; }

[ "$(id -u)" = 0 ] || { echo "install-qemu.sh: run as root" >&2; exit 1; }
have apt-get || { echo "install-qemu.sh: apt-get not found (Debian wanted)" >&2; exit 1; }

need=""
have qemu-system-aarch64 || need="$need qemu-system-arm"
# -M virt loads the virtio-net option ROM from ipxe-qemu
[ -e /usr/lib/ipxe/qemu/efi-virtio.rom ] || need="$need ipxe-qemu"
have cpio || need="$need cpio"
have xz || need="$need xz-utils"
have zstd || need="$need zstd"
{ have depmod && have modprobe; } || need="$need kmod"

updated=0
# the guest script downloads arm64 .debs (kernel, busybox-static)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	dpkg --add-architecture arm64
	apt-get update -qq
	updated=1
fi
if [ -n "$need" ]; then
	[ "$updated" = 1 ] || apt-get update -qq
	# shellcheck disable=SC2086 # word-split on purpose
	apt-get install -y -qq --no-install-recommends $need
fi
echo "install-qemu.sh: qemu-system-aarch64 $(qemu-system-aarch64 --version | head -1 | awk '{print $4}') ready"
