package legion

// Version is the release of this build of Legion.
const Version = "0.1.0"
