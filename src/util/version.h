#ifndef HW_UTIL_VERSION_H
#define HW_UTIL_VERSION_H

#define HW_VERSION "0.1.0"

#endif
