"""Signal sources (USB, downloads, clipboard, screen capture); `base` holds the contract and registry."""
