module waggle.dev/pause

go 1.25
