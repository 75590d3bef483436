/* op_conv3d_internal.h - test hooks of op_conv3d.c (not part of the API).
 *
 * The fast convolution builds its column matrix for a tile of output rows
 * (to, ho) at a time, as many rows as fit in the tile budget (at least one).
 * Tests shrink the budget so small shapes span several tiles and the tile
 * boundaries get exercised. Not thread-safe: set it between ops, not during.
 */
#ifndef OP_CONV3D_INTERNAL_H
#define OP_CONV3D_INTERNAL_H

#include <stddef.h>

#define VT_CONV_TILE_BYTES_DEFAULT ((size_t)8 << 20)

/* Column-buffer budget in bytes; 0 restores the default. Returns the old. */
size_t vt_conv_set_tile_bytes(size_t bytes);

#endif
