/*
 * The release message (DESIGN "Release"): a DNS UPDATE (opcode 5) deleting one CAPA RR,
 * RFC 2136 §2.5.4, byte for byte what resolver/codec/update.ts encodeRelease produces.
 * Pure, no I/O.
 */
#ifndef CAPA_CORE_UPDATE_H
#define CAPA_CORE_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "capa_codec.h"

/* zone: the destination host (or its reverse name); qname: the owner the allocation was asked
 * under. Returns CAPA_OK or a capa_status. */
int capa_release_encode(uint16_t id, const char *zone, const char *qname, const struct capa_record *rec,
                        uint16_t rrtype, uint8_t *buf, size_t len, size_t *written);

#endif
