// Package archtest holds tests of the code base's shape: the import
// direction between packages and their documentation. It has no code.
package archtest
