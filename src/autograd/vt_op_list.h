/* vt_op_list.h - one line per op: VT_OP(name) for the vt_op_def named
 * vt_op_<name> that the op's file defines. Included by ops_table.c only. */
VT_OP(relu)
VT_OP(sigmoid)
VT_OP(tanh)
VT_OP(dropout)
VT_OP(add)
VT_OP(mul)
VT_OP(conv3d)
VT_OP(conv2d_frames)
