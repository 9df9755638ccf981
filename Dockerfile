# popbridge container image: a static binary on distroless, run as a
# numeric non-root user. Build and run:
#
#   docker build -t popbridge .
#   docker run --rm -p 1110:1110 popbridge --demo --listen :1110
#
# Probes come from the orchestrator (GET /livez, /readyz on the admin
# port), so there is no HEALTHCHECK. See docs/operations.md.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CI runs this very line (cmd/popbridge/ops_build_test.go): keep it one line.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/popbridge ./cmd/popbridge

# distroless/static has CA certificates (for imaps:// upstreams), tzdata
# and /etc/passwd entries for nonroot, and nothing else: no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/popbridge /popbridge
USER 65532:65532
# The documented container ports (docs/operations.md): POP3 :1110, POP3S
# :1995, admin :9110. Unprivileged, so no capability is needed; map 110
# and 995 to them in `docker run -p` or the Service. They are set in the
# config (listen, listen-tls, admin-listen), not here: popbridge's
# built-in --listen is loopback only, and an ENV here would silently
# override the config file.
EXPOSE 1110 1995 9110
ENTRYPOINT ["/popbridge"]
