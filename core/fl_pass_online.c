/* online: placeholder until the algebraic rewrite lands (next step). */
#include "fl_pass.h"

fl_status fl_pass_online(fl_graph *g, fl_text *log, fl_err *e) {
  (void)g;
  (void)e;
  fl_text_put(log, "online: not written yet; nothing changed\n");
  return FL_OK;
}
