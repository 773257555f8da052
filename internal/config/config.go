// Package config resolves the folders face0 uses and the built-in packs it
// ships, shared by every subcommand.
package config

import (
	"os"
	"path/filepath"
)

// Home is the root of face0's own data: input/, output/, temp/, cache/,
// plugins/, models/. $FACE0_HOME, else $XDG_DATA_HOME/face0, else
// ~/.local/share/face0.
func Home() string {
	if d := os.Getenv("FACE0_HOME"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "face0")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "face0")
	}
	return filepath.Join(os.TempDir(), "face0")
}

// ModelsEnv names the environment variable that overrides the models
// folder.
const ModelsEnv = "FACE0_MODELS"

// Models is the default models folder: $FACE0_MODELS, else Home()/models.
func Models() string {
	if d := os.Getenv(ModelsEnv); d != "" {
		return d
	}
	return filepath.Join(Home(), "models")
}

// Version is the face0 version; built-in packs report it as theirs.
var Version = "0.1.0-dev"
