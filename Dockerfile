# popbridge container image: a static binary on distroless, run as a
# numeric non-root user. Build and run:
#
#   docker build -t popbridge .
#   docker run --rm -p 110:1110 -p 9110:9110 popbridge --demo
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
# Unprivileged ports inside the container, so no capability is needed:
# map 110 -> 1110 and 995 -> 1995 in `docker run -p` or the Service.
# POP3S is served only when POPBRIDGE_LISTEN_TLS=:1995 and a certificate
# (POPBRIDGE_TLS_CERT, POPBRIDGE_TLS_KEY) are given.
ENV POPBRIDGE_LISTEN=:1110 \
    POPBRIDGE_ADMIN_LISTEN=:9110
EXPOSE 1110 1995 9110
ENTRYPOINT ["/popbridge"]
