package explain

// Roles names each map's role, for the tests.
func Roles() map[string]string {
	names := map[role]string{view: "view", bySource: "bySource", byPrefix: "byPrefix", whole: "whole", fresh: "fresh"}
	out := map[string]string{}
	for m, r := range roles {
		out[m] = names[r]
	}
	return out
}

// Judge is Explain given the program in force (a detached generation's,
// in the tests).
var Judge = judge

// FlagString names TCP flags.
var FlagString = flagString
