#!/usr/bin/env bash
# System packages the test suite needs on Debian/Ubuntu (run as root, or through sudo):
#   ffmpeg, sox              audio conversion in corpus building and tests
#   espeak-ng, flite, festival (+ voices)   text-to-speech engines that make synthetic test speech
#   pulseaudio, pulseaudio-utils, libasound2-plugins   the virtual microphone of the `listen` test
#   libportaudio2            what sounddevice (microphone input) loads
#   libsndfile1              what soundfile loads (the wheel bundles one; the system copy is the fallback)
#   chromium                 the headless browser of the dashboard and WebRTC end-to-end tests
#   openssl                  self-signed certificates for the TLS server tests
set -euo pipefail

PACKAGES=(
    ffmpeg sox
    espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k
    pulseaudio pulseaudio-utils libasound2-plugins libportaudio2
    libsndfile1
    chromium fonts-liberation openssl
    python3-venv
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
