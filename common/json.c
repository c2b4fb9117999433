// SPDX-License-Identifier: GPL-2.0-only
/*
 * JSON output of protobuf-c messages (see common/json.h).  Used by vmmctl
 * and migctl for --json.
 */
#include <stdint.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

/* A JSON string: quotes, backslashes and controls escaped, bytes that are
 * not UTF-8 replaced by U+FFFD, so that the output is always valid. */
void json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	int n;

	fputc('"', f);
	for (; *p; p += n ? n : 1) {
		unsigned char c = *p;

		n = utf8_seq_len(p);
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else if (n)
			fwrite(p, 1, (size_t)n, f);
		else
			fputs("\\ufffd", f);
	}
	fputc('"', f);
}

static size_t json_elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

/* The prefix all of an enum's value names share, up to an underscore:
 * "RUN_STATE_" for RUN_STATE_RUNNING, RUN_STATE_PAUSED... */
static size_t enum_prefix(const ProtobufCEnumDescriptor *d)
{
	size_t n = d->n_values ? strlen(d->values[0].name) : 0, i, k;

	for (k = 1; k < d->n_values; k++)
		for (i = 0; i < n; i++)
			if (d->values[k].name[i] != d->values[0].name[i]) {
				n = i;
				break;
			}
	while (n && d->values[0].name[n - 1] != '_')
		n--;
	return n;
}

/* Enum values as the lower-case rest of their name: JOB_ACTIVE -> "active",
 * RUN_STATE_RUNNING -> "running". */
static void json_enum(FILE *f, const ProtobufCEnumDescriptor *d, int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
	const char *n;
	char buf[64];
	size_t i;

	if (!ev) {
		fprintf(f, "%d", v);
		return;
	}
	n = ev->name + enum_prefix(d);
	for (i = 0; n[i] && i < sizeof(buf) - 1; i++)
		buf[i] = n[i] >= 'A' && n[i] <= 'Z' ? n[i] - 'A' + 'a' : n[i];
	buf[i] = 0;
	json_string(f, buf);
}

static void json_value(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p)
{
	const ProtobufCBinaryData *b;
	size_t i;

	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(f, "%d", *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
		fprintf(f, "%u", *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(f, "%lld", (long long)*(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
		fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		fprintf(f, "%g", *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		fprintf(f, "%g", *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		json_enum(f, fd->descriptor, *(const int *)p);
		break;
	case PROTOBUF_C_TYPE_STRING:
		json_string(f, *(char *const *)p);
		break;
	case PROTOBUF_C_TYPE_BYTES:
		b = p;
		fputc('"', f);
		for (i = 0; i < b->len; i++)
			fprintf(f, "%02x", b->data[i]);
		fputc('"', f);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (*(ProtobufCMessage *const *)p)
			json_message(f, *(ProtobufCMessage *const *)p);
		else
			fputs("null", f);
		break;
	}
}

void json_message(FILE *f, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	unsigned int i;
	size_t k, n;

	fputc('{', f);
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		const char *p = (const char *)m + fd->offset;

		fprintf(f, "%s\"%s\":", i ? "," : "", fd->name);
		if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
			json_value(f, fd, p);
			continue;
		}
		n = *(const size_t *)((const char *)m + fd->quantifier_offset);
		fputc('[', f);
		for (k = 0; k < n; k++) {
			if (k)
				fputc(',', f);
			json_value(f, fd, *(char *const *)p + k * json_elem_size(fd->type));
		}
		fputc(']', f);
	}
	fputc('}', f);
}

void json_print(const ProtobufCMessage *m)
{
	json_message(stdout, m);
	fputc('\n', stdout);
	fflush(stdout);
}
