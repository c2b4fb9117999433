/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * JSON output for the command-line clients (vmmctl, migctl): any
 * protobuf-c message by its descriptor, every field under its proto name,
 * enum values as the lower-case rest of their name after the prefix the
 * enum's values share; strings escaped and always valid UTF-8.
 */
#ifndef TERN_JSON_H
#define TERN_JSON_H

#include <stdio.h>
#include <protobuf-c/protobuf-c.h>

void json_string(FILE *f, const char *s);
void json_message(FILE *f, const ProtobufCMessage *m);
/* The message on stdout, then a newline, flushed. */
void json_print(const ProtobufCMessage *m);

#endif
