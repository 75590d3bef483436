/* ops_table.c - the registry of every op definition. */
#include "vt_autograd.h"

#define VT_OP(name) extern const vt_op_def vt_op_##name;
#include "vt_op_list.h"
#undef VT_OP

#define VT_OP(name) &vt_op_##name,
const vt_op_def *const vt_op_table[] = {
#include "vt_op_list.h"
    NULL};
#undef VT_OP

const int vt_op_table_len = (int)(sizeof vt_op_table / sizeof vt_op_table[0]) - 1;
