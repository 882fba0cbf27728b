module github.com/backpack-field/backpack

go 1.26
