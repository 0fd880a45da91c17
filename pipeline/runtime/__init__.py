"""Where the code runs and what it prints: devices, and library chatter kept out of the terminal."""
